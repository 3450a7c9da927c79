"""The volatility target: realized variance over the next ``horizon`` candles.

The label is the sum of the next ``h`` squared log returns. Forecasts are scored by QLIKE
(``y / f - log(y / f) - 1``), the loss that ranks variance forecasts consistently when the
realized variance is a noisy proxy of the true one (Patton 2011), and by the MSE of log
variance. Learned kinds fit the log of the label (variance is heavy-tailed); the way back is
``exp`` times a smearing factor estimated on rows the model did not fit (Duan 1983), since
``exp(E[log y])`` is the geometric, not the arithmetic, mean.

Baselines (kinds registered for this target): ``persistence`` (the last ``h`` candles'
realized variance again), ``ewma`` (RiskMetrics) and ``har`` (HAR-RV).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from candlecast.targets.base import Target
from candlecast.timeframes import timeframe_ms

#: Variances below this (a flat market, a forecast of nothing) are scored and fitted as this:
#: QLIKE and the log are undefined at 0. A 0.001% move, squared.
VARIANCE_FLOOR = 1e-10
_YEAR_MS = 365.25 * 86_400_000
#: The feature learned kinds forecast relative to (one candle's EWMA variance).
BASE_COLUMN = "ewma_var"


def qlike(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """QLIKE of each row: 0 for a perfect forecast, positive otherwise."""
    ratio = np.maximum(np.asarray(target, float), VARIANCE_FLOOR) / np.maximum(
        np.asarray(predicted, float), VARIANCE_FLOOR
    )
    return ratio - np.log(ratio) - 1.0


def log_squared_error(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Squared error of log variance of each row."""
    floor = VARIANCE_FLOOR
    return (np.log(np.maximum(predicted, floor)) - np.log(np.maximum(target, floor))) ** 2


class VolatilityTarget(Target):
    """Realized variance ``sum(r[t+1..t+h]^2)``, served as ``h``-candle sigma and annualized
    volatility."""

    name: ClassVar[str] = "volatility"
    baselines: ClassVar[tuple[str, ...]] = ("persistence", "ewma", "har")
    primary: ClassVar[str] = "qlike"
    outputs: ClassVar[tuple[str, ...]] = ("variance",)
    description: ClassVar[str] = "realized variance: sum of the next h squared log returns"
    #: Log variance is far more predictable than returns: LightGBM's return defaults (which
    #: shrink hard towards "no change") would underfit it. Common LightGBM settings, fixed
    #: before any evaluation, not tuned on the data the figures are measured on.
    kind_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "lightgbm": {
            "n_estimators": 400,
            "learning_rate": 0.03,
            "num_leaves": 15,
            "min_child_samples": 100,
            "reg_lambda": 1.0,
        }
    }

    def _values(self, log_close: np.ndarray) -> np.ndarray:
        # a sum per row, not a difference of cumulative sums: a row's label must not move by
        # a rounding error when an earlier candle changes
        squared = np.diff(log_close) ** 2
        return np.lib.stride_tricks.sliding_window_view(squared, self.horizon).sum(axis=1)

    def extra_features(self, timeframe: str) -> list[str]:
        """The scale-free volatility features (multi-window realized variance, Parkinson and
        Garman-Klass ranges, relative to the EWMA; the time-of-day profile) and the EWMA
        itself, which learned kinds forecast relative to (:meth:`base`)."""
        from candlecast.features.volatility import relative_columns

        return [*relative_columns(timeframe, (self.horizon,)), BASE_COLUMN]

    def base(self, x: np.ndarray, features: tuple[str, ...]) -> np.ndarray | None:
        """The EWMA forecast of the ``h``-candle variance: learned kinds forecast the log of
        the label relative to it, so their trees never extrapolate to a new volatility level."""
        column = np.asarray(x, np.float64)[:, features.index(BASE_COLUMN)]
        return np.maximum(column * self.horizon, VARIANCE_FLOOR)

    def loss(self, target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return qlike(target, predicted)

    def scores(self, target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        return {
            "qlike": float(np.mean(qlike(target, predicted))),
            "mse_log": float(np.mean(log_squared_error(target, predicted))),
            "bias_log": float(
                np.mean(np.log(np.maximum(predicted, VARIANCE_FLOOR)))
                - np.mean(np.log(np.maximum(target, VARIANCE_FLOOR)))
            ),
        }

    def to_fit_space(self, target: np.ndarray, base: np.ndarray | None) -> np.ndarray:
        relative = np.maximum(np.asarray(target, float), VARIANCE_FLOOR)
        return np.log(relative / (base if base is not None else 1.0))

    def calibrate(self, fitted: np.ndarray, target: np.ndarray, base: np.ndarray | None) -> float:
        """Log of Duan's smearing factor: the mean of ``y / (base * exp(fitted))``."""
        residual = self.to_fit_space(target, base) - np.asarray(fitted, float)
        return float(math.log(np.mean(np.exp(residual)))) if len(residual) else 0.0

    def from_fit_space(
        self, fitted: np.ndarray, correction: float, base: np.ndarray | None
    ) -> np.ndarray:
        scale = base if base is not None else 1.0
        return np.exp(np.asarray(fitted, float).reshape(-1) + correction) * scale

    def onnx_head(self, model: Any, correction: float, features: tuple[str, ...]) -> Any:
        """``exp(output + correction) * max(h * ewma_var, floor)`` after the model's output,
        the EWMA read from the input's :data:`BASE_COLUMN` column."""
        from onnx import TensorProto, helper

        graph = model.graph
        name = graph.output[0].name
        constants: dict[str, tuple[int, list[int], list[float]]] = {
            "vol_shape": (TensorProto.INT64, [2], [-1, 1]),
            "vol_column": (TensorProto.INT64, [1], [features.index(BASE_COLUMN)]),
            "vol_correction": (TensorProto.FLOAT, [1], [correction]),
            "vol_horizon": (TensorProto.FLOAT, [1], [float(self.horizon)]),
            "vol_floor": (TensorProto.FLOAT, [1], [VARIANCE_FLOOR]),
        }
        for key, (kind, dims, values) in constants.items():
            graph.initializer.append(helper.make_tensor(key, kind, dims, values))
        input_name = graph.input[0].name
        graph.node.extend(
            [
                helper.make_node("Reshape", [name, "vol_shape"], ["vol_fitted"]),
                helper.make_node("Add", ["vol_fitted", "vol_correction"], ["vol_log_ratio"]),
                helper.make_node("Exp", ["vol_log_ratio"], ["vol_ratio"]),
                helper.make_node("Gather", [input_name, "vol_column"], ["vol_ewma"], axis=1),
                helper.make_node("Mul", ["vol_ewma", "vol_horizon"], ["vol_scaled"]),
                helper.make_node("Max", ["vol_scaled", "vol_floor"], ["vol_base"]),
                helper.make_node("Mul", ["vol_ratio", "vol_base"], ["variance"]),
            ]
        )
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info("variance", TensorProto.FLOAT, [None, 1]))
        return model

    def answer(self, value: float, close: float, timeframe: str) -> dict[str, float]:
        variance = max(value, 0.0)
        per_year = _YEAR_MS / timeframe_ms(timeframe) / self.horizon
        return {
            "variance": variance,
            "sigma": math.sqrt(variance),
            "annualized_volatility": math.sqrt(variance * per_year),
        }
