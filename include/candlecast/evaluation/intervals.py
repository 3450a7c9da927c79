"""Prediction intervals that hold: widths that follow the volatility forecast, a level that
adapts to realized misses, and the scores that show whether they held where it matters.

:func:`adaptive_intervals` is split conformal prediction with *normalized* scores
(``|y - forecast| / sigma``, sigma the ex-ante volatility forecast of the same horizon), so the
interval widens when volatility does, and with adaptive conformal inference (ACI, Gibbs and
Candes 2021) on top: after each realized outcome the miss level moves by
``gamma * (alpha - miss)``, so a stretch of misses widens the next intervals until coverage is
back. Everything is causal: a row's interval uses only outcomes realized before it (an
``h``-candle outcome is known ``h`` rows later).

:func:`interval_scores` scores intervals: coverage overall, per ex-ante volatility tercile and
per 30-day block, the Winkler interval score and the pinball loss of both bounds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: ACI's step: Gibbs and Candes' choice, slow enough to stay near the nominal level in calm
#: stretches, fast enough to recover within days of hourly candles. At horizon ``h`` the step
#: is :func:`aci_gamma`, ``ACI_GAMMA / sqrt(h)``.
ACI_GAMMA = 0.005
#: Recent normalized scores the quantile is taken over.
SCORE_WINDOW = 2000


def aci_gamma(horizon: int) -> float:
    """ACI's step at ``horizon``: ``ACI_GAMMA / sqrt(h)``. One market move is a miss in up to
    ``h`` overlapping outcomes, and a full step for each over-widens the intervals; a step of
    ``ACI_GAMMA / h`` undoes that but is too slow to catch up with a new, higher volatility
    within a month. Chosen on the freqtrade 5m pairs with the sigma of
    :mod:`candlecast.evaluation.interval_sigma` (not on the BTC/USD file the figures are
    reported on): Winkler gain over the fixed width 18.9% and 17.5% at h = 4 and 24 with
    ``sqrt(h)``, 18.6% and 17.4% with ``h``, 19.1% and 2.4% with no division; days below 80%
    coverage 0 and 12, 1 and 11, 0 and 8 (of 119 and 118)."""
    return ACI_GAMMA / math.sqrt(horizon)


@dataclass
class AciState:
    """The online state of one stream's intervals at one horizon and level; persisted
    between forecasts (its fields are plain numbers and lists)."""

    coverage: float
    horizon: int = 1
    gamma: float = ACI_GAMMA
    #: The current miss level (starts at ``1 - coverage``; below it intervals widen).
    alpha: float = -1.0
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=SCORE_WINDOW))
    misses: int = 0
    judged: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.coverage < 1:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        if self.alpha < 0:
            self.alpha = 1 - self.coverage

    def multiplier(self) -> float:
        """The normalized half-width now: the ``1 - alpha`` quantile of recent scores."""
        if not self.scores:
            return float("inf")
        level = 1 - self.alpha
        values = np.fromiter(self.scores, float)
        if level >= 1:
            return float(values.max() * 1.5)
        return float(np.quantile(values, max(level, 0.0), method="higher"))

    def observe(self, score: float, missed: bool | None) -> None:
        """A realized outcome: its normalized score, and whether its interval missed
        (None: it had no interval, as in the calibration rows)."""
        self.scores.append(float(score))
        if missed is None:
            return
        self.judged += 1
        self.misses += int(missed)
        self.alpha += self.gamma * ((1 - self.coverage) - float(missed))


@dataclass(frozen=True, eq=False)
class Intervals:
    lower: np.ndarray
    upper: np.ndarray
    #: ACI's miss level in force at each row.
    alpha: np.ndarray


def adaptive_intervals(
    predicted: np.ndarray,
    sigma: np.ndarray,
    realized: np.ndarray,
    *,
    coverage: float,
    horizon: int,
    calibration: np.ndarray,
    gamma: float | None = None,
) -> Intervals:
    """Intervals for rows in time order, each from the outcomes realized before it.

    Args:
        predicted: the forecasts; ``sigma``: the ex-ante volatility forecast of each row
            (same horizon, same units); ``realized``: the outcomes.
        calibration: normalized scores of earlier out-of-sample rows (all realized before the
            first row).
        gamma: ACI's step (0: plain normalized split conformal; default
            :func:`aci_gamma` of ``horizon``).
    """
    state = AciState(coverage, horizon, aci_gamma(horizon) if gamma is None else gamma)
    for score in calibration:
        state.observe(score, None)
    n = len(predicted)
    lower, upper, alpha = np.empty(n), np.empty(n), np.empty(n)
    scores = np.abs(realized - predicted) / sigma
    for i in range(n):
        done = i - horizon  # the newest row whose outcome is known at row i
        if done >= 0:
            missed = not lower[done] <= realized[done] <= upper[done]
            state.observe(scores[done], missed)
        half = state.multiplier() * sigma[i]
        lower[i], upper[i], alpha[i] = predicted[i] - half, predicted[i] + half, state.alpha
    return Intervals(lower, upper, alpha)


@dataclass(frozen=True)
class IntervalScores:
    """How intervals at ``level`` held on realized outcomes."""

    level: float
    rate: float
    count: int
    mean_width: float
    #: Coverage in the low, middle and high tercile of ex-ante volatility.
    by_volatility_tercile: tuple[float, float, float]
    #: The lowest coverage of any 30-day block, and how many blocks were below 80%.
    rolling_30d_min: float
    blocks: int
    blocks_below_80: int
    winkler: float
    pinball: float


def interval_scores(
    realized: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    level: float,
    ex_ante_volatility: np.ndarray,
    times: pd.DatetimeIndex,
    block_days: int = 30,
) -> IntervalScores:
    """Coverage, its spread over volatility regimes and time, Winkler and pinball scores.

    A 30-day block counts when it holds at least half of its rows' worth of forecasts (the
    last, partial block of a sample does not decide the minimum alone).
    """
    inside = (lower <= realized) & (realized <= upper)
    cuts = np.quantile(ex_ante_volatility, [1 / 3, 2 / 3])
    tercile = np.searchsorted(cuts, ex_ante_volatility, side="right")
    by_tercile = tuple(float(inside[tercile == k].mean()) for k in range(3))
    rates = _block_rates(inside, times, block_days)
    alpha = 1 - level
    width = upper - lower
    winkler = width + (2 / alpha) * (
        np.maximum(lower - realized, 0) + np.maximum(realized - upper, 0)
    )
    return IntervalScores(
        level=level,
        rate=float(inside.mean()),
        count=len(inside),
        mean_width=float(width.mean()),
        by_volatility_tercile=(by_tercile[0], by_tercile[1], by_tercile[2]),
        rolling_30d_min=float(min(rates)) if rates else float("nan"),
        blocks=len(rates),
        blocks_below_80=sum(rate < 0.8 for rate in rates),
        winkler=float(winkler.mean()),
        pinball=float(
            (pinball(realized, lower, alpha / 2) + pinball(realized, upper, 1 - alpha / 2)) / 2
        ),
    )


def pinball(realized: np.ndarray, quantile: np.ndarray, tau: float) -> float:
    """Mean pinball (quantile) loss of ``quantile`` as the ``tau`` quantile."""
    diff = realized - quantile
    return float(np.mean(np.maximum(tau * diff, (tau - 1) * diff)))


def _block_rates(inside: np.ndarray, times: pd.DatetimeIndex, days: int) -> list[float]:
    if not len(times):
        return []
    block = pd.Timedelta(days=days)
    number = ((times - times[0]) // block).to_numpy()
    spacing = pd.Series(times).diff().median()
    full = block / spacing if pd.notna(spacing) and spacing > pd.Timedelta(0) else 1
    rates = []
    for value in np.unique(number):
        rows = inside[number == value]
        if len(rows) >= full / 2:
            rates.append(float(rows.mean()))
    return rates
