"""Scores of return forecasts: losses, skill over persistence (the zero forecast),
directional accuracy with its uncertainty, and prediction intervals.

Every function takes 1-D arrays of equal length: realised ``target`` log returns and the
forecasts of the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

Metric = Literal["mae", "rmse", "directional_accuracy"]
#: Metrics where lower is better (the promotion gate compares these).
LOSSES = ("mae", "rmse")


def score(target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and directional accuracy of return forecasts.

    Directional accuracy counts forecasts whose sign equals the realised sign; a forecast of
    exactly 0 (persistence) never has a direction, so it scores the share of flat candles.
    """
    error = predicted - target
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "directional_accuracy": float(np.mean(np.sign(predicted) == np.sign(target))),
    }


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]``."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PersistenceRatios:
    """A forecast's losses over persistence's (the zero forecast): below 1 beats it."""

    rmse: float
    mae: float


@dataclass(frozen=True)
class DirectionalAccuracy:
    """Directional accuracy on the rows that have a direction on both sides.

    ``count`` rows are scored: the realised move and the forecast are both non-zero. A flat
    candle (target 0) has no direction to call; a zero forecast abstains (persistence never
    calls one). ``flat`` and ``abstained`` count the rows left out for each reason (a row that
    is both counts as flat). ``majority_rate`` is what always calling the more common
    direction of the scored rows would score (``up_share`` is the share of up moves there):
    accuracy below it is no skill, whatever its interval says.
    """

    accuracy: float
    hits: int
    count: int
    interval: Interval
    majority_rate: float
    up_share: float
    flat: int
    abstained: int


@dataclass(frozen=True)
class Coverage:
    """How often ``lower <= target <= upper`` held: ``rate`` = ``covered`` / ``count``."""

    rate: float
    covered: int
    count: int
    mean_width: float


def rmse(target: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    target, predicted = _pair(target, predicted)
    return float(np.sqrt(np.mean((predicted - target) ** 2)))


def mae(target: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    target, predicted = _pair(target, predicted)
    return float(np.mean(np.abs(predicted - target)))


def persistence_ratios(target: np.ndarray, predicted: np.ndarray) -> PersistenceRatios:
    """RMSE and MAE of ``predicted`` divided by those of the zero forecast (persistence of the
    price: the next log return is 0). Persistence itself scores exactly 1.

    Raises:
        ValueError: every target is 0, so persistence is exact and a ratio means nothing.
    """
    target, predicted = _pair(target, predicted)
    zero = np.zeros_like(target)
    if not np.any(target):
        raise ValueError("every target is 0: persistence is exact, ratios are undefined")
    return PersistenceRatios(
        rmse=rmse(target, predicted) / rmse(target, zero),
        mae=mae(target, predicted) / mae(target, zero),
    )


def directional_accuracy(
    target: np.ndarray, predicted: np.ndarray, confidence: float = 0.95
) -> DirectionalAccuracy:
    """Share of scored rows (non-zero target and forecast) whose forecast sign is right, with
    its Wilson interval at ``confidence`` and the majority-direction baseline (see
    :class:`DirectionalAccuracy`). With no scored rows accuracy and rates are NaN."""
    target, predicted = _pair(target, predicted)
    flat = target == 0
    abstained = ~flat & (predicted == 0)
    scored = ~flat & ~abstained
    count = int(scored.sum())
    hits = int(np.sum(np.sign(target[scored]) == np.sign(predicted[scored])))
    up_share = float(np.mean(target[scored] > 0)) if count else float("nan")
    return DirectionalAccuracy(
        accuracy=hits / count if count else float("nan"),
        hits=hits,
        count=count,
        interval=wilson_interval(hits, count, confidence),
        majority_rate=max(up_share, 1 - up_share) if count else float("nan"),
        up_share=up_share,
        flat=int(flat.sum()),
        abstained=int(abstained.sum()),
    )


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a binomial proportion; ``[0, 1]`` when there are no trials.

    Raises:
        ValueError: successes outside ``[0, trials]`` or confidence outside ``(0, 1)``.
    """
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    _check_level(confidence, "confidence")
    if trials == 0:
        return Interval(0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share, z2n = successes / trials, z * z / trials
    centre = (share + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(share * (1 - share) / trials + z2n / (4 * trials))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def interval_coverage(target: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> Coverage:
    """Coverage of prediction intervals ``[lower, upper]`` (bounds included).

    Raises:
        ValueError: shapes differ, or a lower bound is above its upper bound.
    """
    target, lower = _pair(target, lower)
    _, upper = _pair(target, upper)
    if np.any(lower > upper):
        raise ValueError("a lower bound is above its upper bound")
    covered = int(np.sum((lower <= target) & (target <= upper)))
    return Coverage(
        rate=covered / len(target) if len(target) else float("nan"),
        covered=covered,
        count=len(target),
        mean_width=float(np.mean(upper - lower)) if len(target) else float("nan"),
    )


def conformal_half_width(residuals: np.ndarray, coverage: float = 0.9) -> float:
    """Split-conformal half-width: ``prediction ± half_width`` covers a new target with
    probability at least ``coverage`` when rows are exchangeable with the holdout whose
    ``residuals`` (target - prediction, from a model not fitted on them) are given.

    It is the ``ceil((n + 1) * coverage)``-th smallest absolute residual of the ``n``.
    Returns are not exchangeable in volatile regimes, so check with :func:`interval_coverage`
    on later data.

    Raises:
        ValueError: coverage outside ``(0, 1)``, or too few residuals for it (the interval
            would be infinite: ``n`` must be at least ``coverage / (1 - coverage)``).
    """
    _check_level(coverage, "coverage")
    scores = np.sort(np.abs(np.asarray(residuals, dtype=np.float64).ravel()))
    if np.any(~np.isfinite(scores)):
        raise ValueError("residuals must be finite")
    rank = math.ceil((len(scores) + 1) * coverage - 1e-9)  # 10 * 0.9 is 9.000000000000002
    if rank > len(scores):
        raise ValueError(f"{len(scores)} residuals are too few for {coverage:.0%} coverage")
    return float(scores[rank - 1])


def conformal_interval(predicted: np.ndarray, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` bounds: each forecast minus and plus ``half_width``."""
    predicted = np.asarray(predicted, dtype=np.float64)
    return predicted - half_width, predicted + half_width


def _pair(target: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    target = np.asarray(target, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if target.shape != other.shape or target.ndim != 1:
        raise ValueError(f"expected two 1-D arrays of one shape, got {target.shape}, {other.shape}")
    return target, other


def _check_level(level: float, name: str) -> None:
    if not 0 < level < 1:
        raise ValueError(f"{name} must be between 0 and 1, got {level}")
