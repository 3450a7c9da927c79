"""Prediction intervals that hold: widths that follow the volatility forecast, a level that
adapts to realized misses, and the scores that show whether they held where it matters.

:func:`adaptive_intervals` is split conformal prediction with *normalized* scores
(``|y - forecast| / sigma``, sigma the ex-ante volatility forecast of the same horizon), so the
interval widens when volatility does, and with adaptive conformal inference (ACI, Gibbs and
Candes 2021) on top: after each realized outcome the miss level moves by
``gamma * (alpha - miss)``, so a stretch of misses widens the next intervals until coverage is
back. Everything is causal: a row's interval uses only outcomes realized before it (an
``h``-candle outcome is known ``h`` rows later).

With ``bins`` it is group-conditional (Mondrian) conformal: each row belongs to a bin of ex-ante
volatility (:func:`volatility_bins`: the row's :data:`EX_ANTE_COLUMN` against edges fixed from
the training rows' terciles, :func:`bin_edges`), and each bin has its own scores and its own ACI
level, so each tercile reaches the level on its own. One pooled multiplier cannot: at a day's
horizon volatility mean-reverts, and a sigma that carries today's level over the whole day is
too narrow after a lull and too wide after a storm (BTC/USD 1h, h = 24: 85% in the calm
tercile, 95% in the stormy one). Chosen on BTC/USD 1h before 2019-07-01 and the freqtrade 5m
pairs (``bench/tune_interval_bins.py``), never on the forecasts reported as held out: on the
hourly tuning part at h = 24 the terciles went from 86.7 / 88.7 / 94.8% to 88.9 / 88.5 / 92.1%
and the Winkler gain over the fixed width from 5.2% to 6.9% (h = 4: 86.9 / 91.9 / 91.6% to
88.7 / 91.0 / 91.2%, 15.4% to 15.5%); fixed per-bin scales of sigma (from the training rows or
from earlier out-of-sample scores), two or five bins, and a long-window, free-weight or HAR
sigma all had a lower Winkler gain at h = 24 (4.2 to 6.4%). On the 5m pairs, whose terciles
already held, the bins cost up to 2 points of Winkler gain at h = 24 (17.5% to 15.4%) and cut
the days below 80% from 12 to 10.
On the hourly tuning part, a shorter or longer score window per bin (700, 1,000, 4,000 or
8,000 scores) or bins of ``rv_24`` over the week's level did not do better. MAPIE (BSD-3) has
Mondrian conformal, but as a wrapper of a fitted scikit-learn estimator calibrated once; these
states move online and are persisted and replayed by monitoring, so they are a few lines here
instead.

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
#: The ex-ante volatility that intervals are binned by and judged by: the realized variance of
#: the last 24 candles.
EX_ANTE_COLUMN = "rv_24"
#: Bins of ex-ante volatility (terciles): the groups whose coverage the scores report.
BINS = 3
#: Calibration scores a bin needs to start from its own: with fewer (a calibration stretch in
#: another volatility regime than the rows its edges come from) it starts from all of them.
MIN_BIN_SCORES = 30


def bin_edges(ex_ante: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The inner edges of ``bins`` equally filled bins of ``ex_ante`` (its quantiles)."""
    return np.quantile(np.asarray(ex_ante, np.float64), np.arange(1, bins) / bins)


def bin_prior(scores: np.ndarray, bins: np.ndarray, number: int) -> np.ndarray:
    """The calibration scores bin ``number`` starts from: its own, or all of them when it has
    fewer than :data:`MIN_BIN_SCORES`."""
    own = scores[bins == number]
    return own if len(own) >= MIN_BIN_SCORES else scores


def volatility_bins(ex_ante: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Each value's bin (0 lowest) given the inner ``edges``: how many edges are at or below
    it. The one place rows are binned: a card's rows through
    :meth:`~candlecast.modeling.card.IntervalCalibration.bins`."""
    return np.searchsorted(np.asarray(edges, np.float64), ex_ante, side="right")


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
    bins: np.ndarray | None = None,
    calibration_bins: np.ndarray | None = None,
) -> Intervals:
    """Intervals for rows in time order, each from the outcomes realized before it.

    Args:
        predicted: the forecasts; ``sigma``: the ex-ante volatility forecast of each row
            (same horizon, same units); ``realized``: the outcomes.
        calibration: normalized scores of earlier out-of-sample rows (all realized before the
            first row).
        gamma: ACI's step (0: plain normalized split conformal; default
            :func:`aci_gamma` of ``horizon``).
        bins, calibration_bins: each row's and each calibration score's volatility bin
            (:func:`volatility_bins`): one state per bin (Mondrian). None: one state.
    """
    step = aci_gamma(horizon) if gamma is None else gamma
    n = len(predicted)
    group = np.zeros(n, np.int64) if bins is None else np.asarray(bins, np.int64)
    prior = np.zeros(len(calibration), np.int64)
    if calibration_bins is not None:
        prior = np.asarray(calibration_bins, np.int64)
    states = []
    for k in range(int(max(group.max(initial=0), prior.max(initial=0))) + 1):
        states.append(AciState(coverage, horizon, step))
        for score in bin_prior(np.asarray(calibration, np.float64), prior, k):
            states[k].observe(score, None)
    lower, upper, alpha = np.empty(n), np.empty(n), np.empty(n)
    scores = np.abs(realized - predicted) / sigma
    for i in range(n):
        done = i - horizon  # the newest row whose outcome is known at row i
        if done >= 0:
            missed = not lower[done] <= realized[done] <= upper[done]
            states[group[done]].observe(scores[done], missed)
        state = states[group[i]]
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
    tercile = volatility_bins(ex_ante_volatility, bin_edges(ex_ante_volatility, 3))
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
