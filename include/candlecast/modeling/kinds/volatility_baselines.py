"""The volatility target's baselines: each forecasts the next ``h`` candles' realized
variance as a linear function of volatility features, clipped at the variance floor.

* ``persistence``: the last ``h`` candles' realized variance again (``rv_h``).
* ``ewma``: RiskMetrics, ``h`` times the EWMA of squared returns (decay per timeframe, see
  :mod:`candlecast.features.volatility`).
* ``har``: HAR-RV (Corsi 2009) in logs, least squares of the label's log on the logs of the
  realized variance of the last day, week and month in the stream's own candles, with Duan's
  smearing folded into the intercept. In levels, least squares forecasts negative variances
  after a calm stretch (QLIKE is then unbounded); the log form is the usual remedy. ``arch``'s
  HAR models a series' own next value; here the label is the sum over the next ``h`` candles
  on an intraday grid, so the regression is three columns and an intercept, solved with numpy.

Heavy imports (numpy, the feature module) happen in the methods: the kind registry, which the
DAG factory reads at parse time, stays cheap to import.

The ONNX graph is ``max(features @ weights + intercept, floor)``, with ``log`` before and
``exp`` after the linear part for ``har``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from candlecast.errors import NotEnoughHistoryError
from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.base import (
    IR_VERSION,
    ONNX_INPUT,
    TARGET_OPSET,
    KindParams,
    ModelKind,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from candlecast.targets import Target


class LinearVariance(ModelKind):
    """``max(x @ weights + intercept, floor)`` over a few volatility columns."""

    targets: ClassVar[tuple[str, ...]] = ("volatility",)
    trainable: ClassVar[bool] = False
    baseline: ClassVar[bool] = True
    #: Linear in the logs of the features and the label (``exp(log(x) @ w + b)``).
    log_space: ClassVar[bool] = False

    def __init__(self, features: list[str] | tuple[str, ...], params: KindParams | None = None):
        import numpy as np

        super().__init__(features, params)
        self.weights = np.ones(len(self.spec.features))
        self.intercept = 0.0

    @classmethod
    def columns(cls, target: Target, timeframe: str) -> list[str]:
        raise NotImplementedError

    @classmethod
    def for_target(
        cls,
        target: Target,
        timeframe: str,
        params: KindParams | None = None,
        features: list[str] | tuple[str, ...] = (),
    ) -> ModelKind:
        model = cls(cls.columns(target, timeframe), params)
        model.set_horizon(target.horizon)
        return model

    def set_horizon(self, horizon: int) -> None:
        """Set the weights a horizon implies before fitting (none by default)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Nothing to learn unless a subclass says so."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        from candlecast.targets.volatility import VARIANCE_FLOOR

        inputs = np.asarray(x, np.float64)
        if self.log_space:
            inputs = np.log(np.maximum(inputs, VARIANCE_FLOOR))
        values = inputs @ self.weights + self.intercept
        return np.maximum(np.exp(values) if self.log_space else values, VARIANCE_FLOOR)

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "intercept": self.intercept}

    def log_model(self, input_example: pd.DataFrame, name: str = "model") -> str:
        import mlflow

        mlflow.log_dict({"kind": self.name, **self.state()}, f"{name}/linear_variance.json")
        run = mlflow.active_run()
        return f"runs:/{run.info.run_id if run else ''}/{name}"

    @classmethod
    def load(cls, model_uri: str, features: list[str]) -> ModelKind:
        import mlflow
        import numpy as np

        state = mlflow.artifacts.load_dict(f"{model_uri}/linear_variance.json")
        model = cls(features)
        model.weights = np.asarray(state["weights"], np.float64)
        model.intercept = float(state["intercept"])
        return model

    def to_onnx(self) -> Any:
        import numpy as np
        from onnx import TensorProto, helper

        from candlecast.targets.volatility import VARIANCE_FLOOR

        width = len(self.spec.features)
        weights = helper.make_tensor(
            "weights", TensorProto.FLOAT, [width, 1], self.weights.astype(np.float32).tolist()
        )
        intercept = helper.make_tensor("intercept", TensorProto.FLOAT, [1], [self.intercept])
        floor = helper.make_tensor("floor", TensorProto.FLOAT, [1], [VARIANCE_FLOOR])
        nodes = [
            helper.make_node("MatMul", ["inputs", "weights"], ["product"]),
            helper.make_node("Add", ["product", "intercept"], ["linear"]),
            helper.make_node("Max", ["level", "floor"], ["variance"]),
        ]
        if self.log_space:
            nodes[:0] = [
                helper.make_node("Max", [ONNX_INPUT, "floor"], ["floored"]),
                helper.make_node("Log", ["floored"], ["inputs"]),
            ]
            nodes.insert(-1, helper.make_node("Exp", ["linear"], ["level"]))
        else:
            nodes[:0] = [helper.make_node("Identity", [ONNX_INPUT], ["inputs"])]
            nodes.insert(-1, helper.make_node("Identity", ["linear"], ["level"]))
        graph = helper.make_graph(
            nodes,
            self.name,
            [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, width])],
            [helper.make_tensor_value_info("variance", TensorProto.FLOAT, [None, 1])],
            initializer=[weights, intercept, floor],
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)], ir_version=IR_VERSION
        )


@register
class VolatilityPersistence(LinearVariance):
    name = "persistence"
    serving_note = (
        "No demonstrated edge over the simplest volatility forecast: the next h candles' "
        "variance is forecast as the last h candles' realized variance."
    )

    @classmethod
    def columns(cls, target: Target, timeframe: str) -> list[str]:
        return [f"rv_{target.horizon}"]


@register
class Ewma(LinearVariance):
    name = "ewma"
    serving_note = (
        "Served by the EWMA baseline (RiskMetrics): no learned model beat it significantly."
    )

    @classmethod
    def columns(cls, target: Target, timeframe: str) -> list[str]:
        return ["ewma_var"]

    def set_horizon(self, horizon: int) -> None:
        import numpy as np

        self.weights = np.array([float(horizon)])  # square-root-of-time: h one-candle variances


@register
class Har(LinearVariance):
    name = "har"
    serving_note = "Served by the HAR-RV baseline: no learned model beat it significantly."
    log_space = True

    @classmethod
    def columns(cls, target: Target, timeframe: str) -> list[str]:
        from candlecast.features.volatility import har_windows

        return [f"rv_{window}" for window in har_windows(timeframe)]

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Least squares of ``log y`` on the columns' logs and an intercept, the slopes held
        non-negative (no component of past variance lowers the forecast: over a short window,
        free slopes on the overlapping monthly sums swing negative and the forecast with them),
        plus the log of Duan's smearing factor (the mean of ``exp`` of the residuals)."""
        import numpy as np
        from scipy.optimize import nnls

        from candlecast.targets.volatility import VARIANCE_FLOOR

        if len(x) < 2 * (len(self.spec.features) + 1):
            raise NotEnoughHistoryError(
                f"har: {len(x)} rows with the day, week and month windows filled are too few to fit"
            )
        logs = np.log(np.maximum(np.asarray(x, np.float64), VARIANCE_FLOOR))
        label = np.log(np.maximum(np.asarray(y, np.float64), VARIANCE_FLOOR))
        centre_x, centre_y = logs.mean(axis=0), label.mean()
        self.weights, _ = nnls(logs - centre_x, label - centre_y)
        intercept = centre_y - float(centre_x @ self.weights)
        residual = label - logs @ self.weights - intercept
        self.intercept = float(intercept + np.log(np.mean(np.exp(residual))))
