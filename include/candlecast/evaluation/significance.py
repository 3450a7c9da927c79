"""Is forecast A really better than forecast B, or just lucky on this sample?

Both tests take the two forecasts' errors (``predicted - target``) on the same rows, in time
order. Returns are autocorrelated in their volatility, so neither treats rows as independent:
the Diebold-Mariano test uses a Newey-West (HAC) variance, the bootstrap resamples blocks of
consecutive rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from candlecast.evaluation.metrics import Interval

Loss = Literal["squared", "absolute"]
RatioMetric = Literal["rmse", "mae"]
_METRIC_LOSS: dict[str, Loss] = {"rmse": "squared", "mae": "absolute"}


@dataclass(frozen=True)
class DieboldMariano:
    """Diebold-Mariano test of equal expected loss, with the Harvey-Leybourne-Newbold
    small-sample correction.

    ``statistic`` is negative when A's mean loss is lower (``mean_difference`` is the mean of
    loss A - loss B); ``p_value`` is one-sided for "A has lower expected loss than B", from
    Student's t with ``count - 1`` degrees of freedom: about 0.5 when they are equal, small
    when A is better.
    """

    statistic: float
    p_value: float
    mean_difference: float
    count: int
    horizon: int
    loss: str


@dataclass(frozen=True)
class BootstrapRatio:
    """Moving-block bootstrap of ``metric`` A / ``metric`` B (below 1: A is better).

    ``ratio`` is the sample's ratio, ``interval`` the percentile interval of the resampled
    ratios, ``a_better_share`` the share of resamples where A's ratio is below 1.
    """

    ratio: float
    interval: Interval
    a_better_share: float
    metric: RatioMetric
    resamples: int
    block: int
    seed: int


def diebold_mariano(
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    *,
    loss: Loss = "squared",
    horizon: int = 1,
) -> DieboldMariano:
    """Diebold-Mariano test that forecast A has lower expected ``loss`` than forecast B.

    The variance of the mean loss difference is Newey-West's (Bartlett weights) with
    ``horizon - 1`` lags, as ``horizon``-step forecast errors are autocorrelated up to that
    lag; the statistic is then scaled by HLN's ``sqrt((n + 1 - 2h + h(h - 1) / n) / n)``.
    When the loss difference never varies, the statistic is 0 if it is 0 everywhere (p 0.5)
    and infinite otherwise.

    Raises:
        ValueError: shapes differ, fewer than 2 rows, non-finite errors, horizon outside
            ``[1, n)``, or an unknown loss.
    """
    a, b = _errors(errors_a, errors_b)
    return _diebold_mariano(_loss(a, loss) - _loss(b, loss), horizon, loss)


def diebold_mariano_losses(
    losses_a: np.ndarray, losses_b: np.ndarray, *, horizon: int = 1, name: str = "qlike"
) -> DieboldMariano:
    """:func:`diebold_mariano` on per-row losses already computed (QLIKE of variance
    forecasts, say), ``name`` recorded as the loss.

    Raises:
        ValueError: as :func:`diebold_mariano`.
    """
    a, b = _errors(losses_a, losses_b)
    return _diebold_mariano(a - b, horizon, name)


def _diebold_mariano(difference: np.ndarray, horizon: int, loss: str) -> DieboldMariano:
    count = len(difference)
    if not 1 <= horizon < count:
        raise ValueError(f"horizon must be in [1, {count}), got {horizon}")
    mean = float(difference.mean())
    spread = math.sqrt(max(_long_run_variance(difference, horizon - 1), 0.0) / count)
    hln = (count + 1 - 2 * horizon + horizon * (horizon - 1) / count) / count
    statistic = _standardised(mean, spread) * math.sqrt(hln)
    p_value = float(stats.t.cdf(statistic, df=count - 1))
    return DieboldMariano(statistic, p_value, mean, count, horizon, loss)


def block_bootstrap_ratio(
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    *,
    metric: RatioMetric = "rmse",
    block: int | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapRatio:
    """Confidence interval of ``metric`` A / ``metric`` B by the moving-block bootstrap.

    Each resample strings together ``ceil(n / block)`` blocks of ``block`` consecutive rows
    (default ``round(n ** (1/3))``), drawn with replacement; A and B are resampled on the same
    rows, so their pairing is kept. Whole blocks make a resample up to ``block - 1`` rows
    longer than the sample, which a ratio of means does not notice. The same ``seed`` gives
    the same result.

    Raises:
        ValueError: shapes differ, fewer than 2 rows, non-finite errors, block outside
            ``[1, n]``, no resamples, confidence outside ``(0, 1)``, or an unknown metric.
    """
    a, b = _errors(errors_a, errors_b)
    if metric not in _METRIC_LOSS:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(_METRIC_LOSS)}")
    block = max(1, round(len(a) ** (1 / 3))) if block is None else block
    _check_bootstrap(len(a), block, resamples, confidence)
    loss_a, loss_b = _loss(a, _METRIC_LOSS[metric]), _loss(b, _METRIC_LOSS[metric])
    sums_a = sliding_window_view(loss_a, block).sum(axis=1)
    sums_b = sliding_window_view(loss_b, block).sum(axis=1)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(sums_a), size=(resamples, math.ceil(len(a) / block)))
    ratios = _ratio(sums_a[starts].sum(axis=1), sums_b[starts].sum(axis=1), metric)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return BootstrapRatio(
        ratio=float(_ratio(loss_a.sum(keepdims=True), loss_b.sum(keepdims=True), metric)[0]),
        interval=Interval(float(low), float(high)),
        a_better_share=float(np.mean(ratios < 1)),
        metric=metric,
        resamples=resamples,
        block=block,
        seed=seed,
    )


def _errors(errors_a: np.ndarray, errors_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(errors_a, dtype=np.float64)
    b = np.asarray(errors_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two 1-D error series of one shape, got {a.shape}, {b.shape}")
    if len(a) < 2:
        raise ValueError(f"need at least 2 errors, got {len(a)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("errors must be finite")
    return a, b


def _loss(errors: np.ndarray, loss: Loss) -> np.ndarray:
    if loss == "squared":
        return errors**2
    if loss == "absolute":
        return np.abs(errors)
    raise ValueError(f"unknown loss {loss!r}: use 'squared' or 'absolute'")


def _long_run_variance(series: np.ndarray, lags: int) -> float:
    """Newey-West estimate of the long-run variance: autocovariances up to ``lags`` with
    Bartlett weights ``1 - k / (lags + 1)`` (never negative, unlike equal weights)."""
    centred = series - series.mean()
    count = len(centred)
    variance = float(centred @ centred) / count
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)
        variance += 2 * weight * float(centred[lag:] @ centred[:-lag]) / count
    return variance


def _standardised(mean: float, spread: float) -> float:
    """``mean / spread``; with no spread 0 for a zero mean, else an infinity of its sign."""
    if spread > 0:
        return mean / spread
    return 0.0 if mean == 0 else math.copysign(math.inf, mean)


def _ratio(sum_a: np.ndarray, sum_b: np.ndarray, metric: RatioMetric) -> np.ndarray:
    """A / B of total losses (equal row counts cancel); 1 where both are 0, inf where only B
    is."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sum_a == sum_b, 1.0, sum_a / sum_b)
    return np.sqrt(ratio) if metric == "rmse" else ratio


def _check_bootstrap(count: int, block: int, resamples: int, confidence: float) -> None:
    if not 1 <= block <= count:
        raise ValueError(f"block must be in [1, {count}], got {block}")
    if resamples < 1:
        raise ValueError(f"need at least 1 resample, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


@dataclass(frozen=True)
class WindowedTest:
    """A over B in ``windows`` consecutive holdout windows: each window's mean loss
    difference (A - B) is one observation of a one-sided t-test that A's loss is lower.

    Averaging within windows first absorbs the short-range autocorrelation of losses
    (volatility clusters), so the windows are close to independent, as the t-test assumes.
    """

    p_value: float
    statistic: float
    windows: int
    mean_difference: float
    loss: Loss


def windowed_loss_test(
    errors_a: np.ndarray, errors_b: np.ndarray, *, loss: Loss = "squared", windows: int = 8
) -> WindowedTest:
    """Is A's expected ``loss`` lower than B's, judged over ``windows`` rolling holdout windows?

    Raises:
        ValueError: shapes differ, non-finite errors, fewer than 2 windows, or fewer rows
            than windows.
    """
    a, b = _errors(errors_a, errors_b)
    if windows < 2 or len(a) < windows:
        raise ValueError(f"need at least 2 windows and a row per window ({len(a)} rows)")
    difference = _loss(a, loss) - _loss(b, loss)
    means = np.array([part.mean() for part in np.array_split(difference, windows)])
    spread = float(means.std(ddof=1)) / math.sqrt(windows)
    statistic = _standardised(float(means.mean()), spread)
    p_value = float(stats.t.cdf(statistic, df=windows - 1))
    return WindowedTest(p_value, statistic, windows, float(difference.mean()), loss)
