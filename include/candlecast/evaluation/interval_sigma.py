"""The sigma that return intervals scale by: a forecast of the next ``h`` candles' realized
variance that mean-reverts, fitted on the training window.

``forecast +- m * sigma`` holds in every volatility regime only when sigma tracks the variance
of the *next* ``h`` candles. The EWMA of squared returns times ``h`` assumes today's variance
lasts the whole horizon; volatility mean-reverts, so at a day's horizon that sigma is too wide
after a storm and too narrow after a lull. Here the ``h``-candle variance is log-linear in the
EWMA and the realized variance of the short and middle HAR windows (an hour and a day on
sub-hourly timeframes, a day and a week on hourly and longer ones):

    variance = exp(intercept + sum_i weights_i * log(max(x_i, floor)))

with non-negative weights fitted by QLIKE (the Gaussian quasi-likelihood ``y / f + log f``)
on the training rows' realized ``h``-candle variance. Weights summing to less than 1 pull the
forecast towards the window's level: mean reversion, learned per stream and horizon. QLIKE
rather than least squares in logs: it estimates the conditional mean itself (no smearing),
and a zero realized variance (a flat candle, common at 5m) is an ordinary row instead of a
log of the floor that would dominate the fit.

Chosen on the freqtrade 5m pairs (ten pairs, h = 1, 4, 24; ``bench/tune_interval_sigma.py``),
not on the BTC/USD file the figures are reported on: against the EWMA sigma, the Winkler gain
over the fixed width went from 9.2% to 11.6% at h = 1, 15.4% to 17.6% at h = 4 and 16.0% to
15.2% at h = 24, and the spread of coverage across volatility terciles from 2.5 to 1.7, 3.0 to
0.3 and 2.3 to 1.5 points. Those files span 20 days, so their longest horizon is two hours.

:func:`horizon_variance` is the whole computation at forecast time (numpy only): evaluation,
training's card and the service call it with the same coefficients, so a served interval is
the evaluated one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candlecast.errors import NotEnoughHistoryError
from candlecast.features.volatility import har_windows

#: The name the card records for this source.
SOURCE = "qlike_log_linear"
#: Variances below this are read as this (the log is undefined at 0); the volatility
#: target's floor, a 0.001% move squared.
FLOOR = 1e-10
#: Rows a fit needs at the least: the slopes of three noisy columns need hundreds of rows.
MIN_ROWS = 100


def sigma_columns(timeframe: str) -> list[str]:
    """The volatility features the sigma reads, for ``timeframe``'s windows."""
    short, middle, _ = har_windows(timeframe)
    return ["ewma_var", f"rv_{short}", f"rv_{middle}"]


@dataclass(frozen=True)
class SigmaFit:
    """Fitted coefficients of :func:`horizon_variance` over ``columns``."""

    columns: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float

    def sigma(self, values: np.ndarray) -> np.ndarray:
        """Sigma of each row of ``values`` (rows x ``columns``, in that order)."""
        return np.sqrt(horizon_variance(values, self.weights, self.intercept))


def horizon_variance(
    values: np.ndarray, weights: tuple[float, ...] | list[float], intercept: float
) -> np.ndarray:
    """``exp(intercept + log(max(values, floor)) @ weights)`` per row, at least the floor."""
    logs = np.log(np.maximum(np.asarray(values, np.float64), FLOOR))
    return np.maximum(np.exp(logs @ np.asarray(weights, np.float64) + intercept), FLOOR)


def fit_sigma(values: np.ndarray, realized: np.ndarray, columns: list[str]) -> SigmaFit:
    """Weights (non-negative) and intercept minimizing the mean QLIKE of the forecast against
    each row's realized ``h``-candle variance.

    Args:
        values: training rows x ``columns``, every value finite.
        realized: the realized variance of the ``h`` candles after each row.

    Raises:
        NotEnoughHistoryError: fewer than :data:`MIN_ROWS` rows.
        ValueError: non-finite values or a negative realized variance.
    """
    from scipy.optimize import minimize

    x, y = np.asarray(values, np.float64), np.asarray(realized, np.float64)
    if len(x) < MIN_ROWS:
        raise NotEnoughHistoryError(
            f"interval sigma: {len(x)} rows with its features are too few to fit ({MIN_ROWS})"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (y < 0).any():
        raise ValueError("interval sigma: non-finite features or a negative realized variance")
    logs = np.log(np.maximum(x, FLOOR))
    centred = logs - logs.mean(axis=0)
    target = np.maximum(y, 0.0)

    def level(linear: np.ndarray) -> float:
        # for fixed slopes, QLIKE's best intercept is the log of the mean of y / exp(linear)
        return float(np.log(max(np.mean(target * np.exp(-linear)), FLOOR)))

    def qlike(weights: np.ndarray) -> float:
        linear = centred @ weights
        shift = level(linear)
        return float(np.mean(target * np.exp(-linear - shift) + linear + shift))

    start = np.full(len(columns), 1.0 / len(columns))
    found = minimize(qlike, start, method="L-BFGS-B", bounds=[(0.0, None)] * len(columns))
    weights = np.asarray(found.x, np.float64)
    intercept = level(centred @ weights) - float(logs.mean(axis=0) @ weights)
    return SigmaFit(tuple(columns), tuple(float(w) for w in weights), intercept)
