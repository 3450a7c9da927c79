"""LightGBM classifier of the next candle's direction, forecasting a return.

The classifier learns ``P(up)``, up meaning a next-candle return above 0. Flat returns (exactly
0: the close did not move) are dropped from its training rows, being neither up nor down;
calling them down would teach it a bias towards falls.

Its forecast, what :meth:`~LightGBMDirection.predict` returns and the ONNX graph outputs, is a
return like every kind's, so the gate, the metrics and serving compare it with the others::

    forecast = (2 * P(up) - 1) * scale

``scale`` is the mean absolute return of all the rows given to ``fit`` (flat rows included),
stored with the model. The sign is the direction (positive exactly when ``P(up) > 0.5``), the
size never exceeds ``scale``. When the size of a move does not depend on its direction this is
the expected return, ``P(up) * E|r| - P(down) * E|r|``: ``P(up)`` is learnt among candles that
moved, and flat candles, which add 0 to the expected return, shrink ``scale`` by their share.

Early stopping and the refit are :mod:`.lightgbm_kind`'s, on the binary log loss of the last
``validation_fraction`` of the non-flat training rows (chronological).

MLflow: the scikit-learn ``LGBMClassifier`` in the LightGBM flavour (its pyfunc answers the
direction label, 1 up and 0 down), with ``scale``, the parameters and the features in the
MLmodel metadata, which :meth:`~LightGBMDirection.load` reads back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.base import ONNX_INPUT, KindParams, ModelKind
from candlecast.modeling.kinds.lightgbm_kind import (
    LightGBMParams,
    convert,
    estimator_options,
    fit_early_stopped,
    gains,
    hyper,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: The ONNX output, named like the regressor's.
ONNX_OUTPUT = "variable"
#: onnxmltools' classifier output (``zipmap=False``): one column per class, down then up.
PROBABILITIES = "probabilities"


class DirectionParams(LightGBMParams):
    """The regressor's parameters with conservative defaults of its own (not re-tuned with the
    regressor's): few shallow trees, a slow rate and early stopping keep ``P(up)`` close to
    0.5, so the forecast shrinks towards "no change" unless the data insist."""

    learning_rate: float = Field(default=0.005, gt=0)
    num_leaves: int = Field(default=4, gt=1)
    early_stopping_rounds: int = Field(default=50, ge=0)


@register
class LightGBMDirection(ModelKind):
    name = "lightgbm_direction"
    Params = DirectionParams

    def __init__(self, features: list[str] | tuple[str, ...], params: KindParams | None = None):
        super().__init__(features, params)
        self.model: Any = None
        #: Mean absolute return of the training rows: the size of a certain forecast.
        self.scale = 0.0
        #: Trees kept by early stopping in the last fit (None: it did not run, or loaded).
        self.best_iteration: int | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit ``P(up)`` on the rows whose return is not 0, and ``scale`` on all of them.

        Raises:
            ValueError: the rows hold no up move or no down move.
        """
        import lightgbm as lgb
        import numpy as np

        moved = y != 0
        up = (y[moved] > 0).astype(np.int64)
        if len(np.unique(up)) < 2:
            raise ValueError(
                f"{self.name} needs up and down moves, got {int(up.sum())} up of {len(up)}"
            )
        params = hyper(self.params)
        options = estimator_options(params)
        self.model, self.best_iteration = fit_early_stopped(
            lambda trees: lgb.LGBMClassifier(n_estimators=trees, **options), x[moved], up, params
        )
        self.scale = float(np.mean(np.abs(y)))

    def probability_up(self, x: np.ndarray) -> np.ndarray:
        """``P(up)`` for rows ``x``."""
        import numpy as np

        return np.asarray(self._fitted().predict_proba(x), dtype=np.float64)[:, 1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (2.0 * self.probability_up(x) - 1.0) * self.scale

    def log_model(self, input_example: pd.DataFrame, name: str = "model") -> str:
        import mlflow
        from mlflow.models import infer_signature

        from candlecast.modeling.registry import import_skops, pip_requirements

        import_skops()

        model = self._fitted()
        labels = model.predict(input_example.to_numpy())
        info = mlflow.lightgbm.log_model(
            model,
            name=name,
            signature=infer_signature(input_example, labels),
            input_example=input_example.head(3),
            pip_requirements=pip_requirements("lightgbm", "scikit-learn", "skops"),
            metadata={
                "kind": self.name,
                "features": list(self.spec.features),
                "kind_params": self.params.model_dump(),
                "scale": self.scale,
                "forecast": "(2 * P(up) - 1) * scale",
            },
        )
        return str(info.model_uri)

    @classmethod
    def load(cls, model_uri: str, features: list[str]) -> LightGBMDirection:
        """The classifier logged at ``model_uri``, with its scale and parameters.

        Raises:
            ValueError: the logged model is another kind or was fitted on other features.
        """
        import tempfile

        import mlflow
        from mlflow.models import Model

        from candlecast.modeling.registry import import_skops

        import_skops()
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
            metadata = Model.load(local).metadata or {}
            model = mlflow.lightgbm.load_model(local)
        loaded = cls.from_logged(metadata, features, model_uri)
        loaded.model = model
        loaded.scale = float(metadata["scale"])
        return loaded

    def feature_importance(self) -> dict[str, float] | None:
        """Total split gain per feature."""
        return gains(self._fitted(), self.spec.features)

    def to_onnx(self) -> Any:
        """onnxmltools' classifier graph, its probabilities turned into the forecast return.

        Four nodes follow the ``probabilities`` output (float32 ``[batch, 2]``, columns down
        and up): take column 1, times 2, minus 1, times ``scale``; the result ``variable``
        (``[batch, 1]``) is the only output, the label branch is pruned away. The ops used
        (Gather, Mul, Sub) mean the same in every opset the converter may choose.
        """
        from onnx import TensorProto, helper, utils

        converted = convert(self._fitted(), len(self.spec.features))
        graph = converted.graph
        if PROBABILITIES not in {output.name for output in graph.output}:
            raise RuntimeError(f"onnxmltools gave no {PROBABILITIES!r} output: {graph.output}")
        floats = {"direction_two": 2.0, "direction_one": 1.0, "direction_scale": self.scale}
        graph.initializer.extend(
            [
                helper.make_tensor("direction_up_column", TensorProto.INT64, [1], [1]),
                *(helper.make_tensor(k, TensorProto.FLOAT, [1], [v]) for k, v in floats.items()),
            ]
        )
        graph.node.extend(
            [
                helper.make_node(
                    "Gather", [PROBABILITIES, "direction_up_column"], ["p_up"], axis=1
                ),
                helper.make_node("Mul", ["p_up", "direction_two"], ["twice_p_up"]),
                helper.make_node("Sub", ["twice_p_up", "direction_one"], ["signed"]),
                helper.make_node("Mul", ["signed", "direction_scale"], [ONNX_OUTPUT]),
            ]
        )
        graph.output.append(
            helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, [None, 1])
        )
        pruned = utils.Extractor(converted).extract_model([ONNX_INPUT], [ONNX_OUTPUT])
        pruned.graph.name = self.name
        return pruned

    def _fitted(self) -> Any:
        if self.model is None:
            raise RuntimeError(f"{self.name} model is not fitted or loaded")
        return self.model
