"""The sigma that return intervals scale by: a forecast of the next ``h`` candles' realized
variance, fitted on the training window, that scales with today's volatility.

``forecast +- m * sigma`` holds in every volatility regime only when sigma tracks the variance
of the *next* ``h`` candles. The EWMA of squared returns times ``h`` assumes today's variance
lasts the whole horizon; volatility mean-reverts, so at a day's horizon that sigma is too wide
after a storm and too narrow after a lull. Here the ``h``-candle variance is log-linear in the
EWMA and the realized variance of the short and middle HAR windows (an hour and a day on
sub-hourly timeframes, a day and a week on hourly and longer ones):

    variance = exp(intercept + sum_i weights_i * log(max(x_i, floor)))

with non-negative weights *summing to 1*, fitted by QLIKE (the Gaussian quasi-likelihood
``y / f + log f``) on the training rows' realized ``h``-candle variance. The weights choose how
much of the forecast is today's level and how much the middle window's (a pull towards the
last week's level at 1h: mean reversion), the intercept the horizon's scale. Summing to 1
makes the forecast homogeneous: volatility ``k`` times higher in every column gives a
variance ``k`` times higher. Free weights (the sigma before) summed to less than 1 and pulled
the forecast towards the *training window's* level instead, so a storm after calm months stayed
too narrow for weeks (BTC/USD 1h: worst 30-day coverage 78.8% at h = 4, 68.5% at h = 24).
QLIKE rather than least squares in logs: it estimates the conditional mean itself (no
smearing), and a zero realized variance (a flat candle, common at 5m) is an ordinary row
instead of a log of the floor that would dominate the fit.

Chosen on the freqtrade 5m pairs (ten pairs, h = 1, 4, 24, 1-day windows after 5 days of
training; ``bench/tune_interval_sigma.py``), not on the BTC/USD file the figures are reported
on. Against the free weights, with ACI's step at ``gamma / sqrt(h)``
(:func:`candlecast.evaluation.intervals.aci_gamma`, chosen with it), the Winkler gain over the
fixed width went from 11.6% to 11.8% at h = 1, 17.6% to 18.9% at h = 4 and 15.2% to 17.5% at
h = 24, and the days below 80% coverage (of 120, 119 and 118) from 0, 4 and 17 to 0, 0 and
12. Adding the long HAR window (a week at 5m), a fourth, faster column (``rv_4``), the
geometric mean or the maximum with the EWMA sigma, a shorter score window or ACI's full step
``gamma`` did not do better on both the Winkler gain and the days below 80% (the README lists
them). Those files span 20 days, so their
longest horizon is two hours. At a day on hourly candles (BTC/USD 1h before 2019-07-01,
``bench/tune_interval_bins.py``) this sigma leaves the calm tercile under-covered and the stormy
one over-covered (86.7 / 88.7 / 94.8%) because it carries today's level over the whole day;
the per-bin multipliers of :mod:`candlecast.evaluation.intervals` correct that. With them, the
long HAR window (a month) as a fourth column (weights summing to 1 or free) or the volatility
target's HAR baseline as the sigma did not do better (Winkler gain over the fixed width 4.7 to
5.8% at h = 24 and 14.2 to 15.0% at h = 4, against 6.9% and 15.5%).

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
    """Weights (non-negative, summing to 1) and intercept minimizing the mean QLIKE of the
    forecast against each row's realized ``h``-candle variance.

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

    def unit(free: np.ndarray) -> np.ndarray:
        # the weights on the simplex: free non-negative parameters, normalized
        return free / max(float(free.sum()), 1e-12)

    def qlike(free: np.ndarray) -> float:
        linear = centred @ unit(free)
        shift = level(linear)
        return float(np.mean(target * np.exp(-linear - shift) + linear + shift))

    start = np.full(len(columns), 1.0 / len(columns))
    found = minimize(qlike, start, method="L-BFGS-B", bounds=[(1e-9, None)] * len(columns))
    weights = unit(np.asarray(found.x, np.float64))
    intercept = level(centred @ weights) - float(logs.mean(axis=0) @ weights)
    return SigmaFit(tuple(columns), tuple(float(w) for w in weights), intercept)
