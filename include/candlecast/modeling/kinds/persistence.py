"""Persistence: the "no change" forecast (a next-candle log return of 0).

The baseline every trained kind must beat before it is served; when none does, persistence
itself is registered and served, and says so in every answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.base import IR_VERSION, ONNX_INPUT, TARGET_OPSET, ModelKind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@register
class Persistence(ModelKind):
    name = "persistence"
    trainable = False
    serving_note = (
        "No trained model beats the persistence forecast on the latest holdout, so the champion "
        "is persistence: the forecast is 'no change' (return 0, price = last close)."
    )

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Nothing to learn."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.zeros(len(x), dtype=np.float64)

    def log_model(self, input_example: pd.DataFrame) -> str:
        import mlflow
        import numpy as np
        from mlflow.models import infer_signature

        from candlecast.modeling.registry import PersistencePyfunc, pip_requirements

        info = mlflow.pyfunc.log_model(
            name="persistence",
            python_model=PersistencePyfunc(),
            signature=infer_signature(input_example, np.zeros(len(input_example))),
            input_example=input_example.head(3),
            pip_requirements=pip_requirements(),
        )
        return str(info.model_uri)

    @classmethod
    def load(cls, model_uri: str, features: list[str]) -> Persistence:
        return cls(features)

    def to_onnx(self) -> Any:
        """A graph that answers 0 for every row: ``features @ zeros``."""
        from onnx import TensorProto, helper

        width = len(self.spec.features) * self.window
        zeros = helper.make_tensor("zeros", TensorProto.FLOAT, [width, 1], [0.0] * width)
        graph = helper.make_graph(
            [helper.make_node("MatMul", [ONNX_INPUT, "zeros"], ["variable"])],
            "persistence",
            [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, width])],
            [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
            initializer=[zeros],
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)], ir_version=IR_VERSION
        )
