"""Baselines: forecasts of a constant return, always evaluated beside the trained kinds.

* ``persistence``: "no change", a next-candle log return of 0. Every challenger must beat it
  before it is served; when none shows an edge, persistence itself is champion and says so.
* ``drift``: the training window's mean return (a trend carried forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.base import IR_VERSION, ONNX_INPUT, TARGET_OPSET, ModelKind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class ConstantReturn(ModelKind):
    """A kind whose forecast is one number, learnt (or not) from the training targets."""

    value: float = 0.0
    baseline: ClassVar[bool] = True

    def predict(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.full(len(x), self.value, dtype=np.float64)

    def log_model(self, input_example: pd.DataFrame, name: str = "model") -> str:
        import mlflow
        import numpy as np
        from mlflow.models import infer_signature

        from candlecast.modeling.registry import CONSTANT_MODEL_CODE, pip_requirements

        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=CONSTANT_MODEL_CODE,
            model_config={"value": self.value},
            signature=infer_signature(input_example, np.zeros(len(input_example))),
            input_example=input_example.head(3),
            pip_requirements=pip_requirements(),
        )
        return str(info.model_uri)

    @classmethod
    def load(cls, model_uri: str, features: list[str]) -> ConstantReturn:
        import mlflow

        loaded = cls(features)
        python_model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        loaded.value = float(getattr(python_model, "value", 0.0))
        return loaded

    def to_onnx(self) -> Any:
        """``features @ zeros + value``: the constant for every row."""
        from onnx import TensorProto, helper

        width = len(self.spec.features) * self.window
        zeros = helper.make_tensor("zeros", TensorProto.FLOAT, [width, 1], [0.0] * width)
        value = helper.make_tensor("value", TensorProto.FLOAT, [1], [self.value])
        graph = helper.make_graph(
            [
                helper.make_node("MatMul", [ONNX_INPUT, "zeros"], ["product"]),
                helper.make_node("Add", ["product", "value"], ["variable"]),
            ],
            self.name,
            [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, width])],
            [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
            initializer=[zeros, value],
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)], ir_version=IR_VERSION
        )


@register
class Persistence(ConstantReturn):
    name = "persistence"
    trainable = False
    serving_note = (
        "No demonstrated edge: no trained model has beaten the persistence forecast by a "
        "significant margin on recent data, so the forecast is 'no change' "
        "(return 0, price = last close)."
    )

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Nothing to learn: the forecast is always 0."""


@register
class Drift(ConstantReturn):
    name = "drift"
    serving_note = (
        "Served by the drift baseline (the training window's mean return carried forward): "
        "no learned model beat it significantly."
    )

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """The mean next-candle return of the training window."""
        self.value = float(y.mean()) if len(y) else 0.0
