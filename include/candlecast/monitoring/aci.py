"""Adaptive conformal inference online: each check moves the persisted interval state of a
(stream, target, horizon) by the outcomes realized since the last one.

The state (:mod:`candlecast.serving.aci`) is :class:`~candlecast.evaluation.intervals.AciState`
per level, replayed in data time exactly as evaluation runs it: at each candle's close, first
the outcomes realized at that close are judged (against the multiplier that was served for
them), then the multiplier of the forecast made at that close is fixed. A row is fixed once and
judged once (the state records the newest fixed row and the rows still pending), so re-running
a check changes nothing, and a check as of ``T`` uses only outcomes realized by ``T``.

A new state (a new champion, a new calibration) starts from the card's calibration: its
multipliers, read as a quantile function of the normalized scores and sampled at
:data:`PRIOR_SCORES` points, are the scores the first quantiles are taken over; realized scores
replace them as they come (the window keeps the newest
:data:`~candlecast.evaluation.intervals.SCORE_WINDOW`). Its first check replays the check's whole
window on the new champion, as monitoring's target figures judge it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from candlecast.evaluation.intervals import SCORE_WINDOW, AciState, aci_gamma
from candlecast.modeling.card import IntervalCalibration
from candlecast.serving.aci import AciFile, AciLevel, identity

#: How many realized outcomes the card's calibration counts as (about a holdout's worth).
PRIOR_SCORES = 1000
#: Checks remembered for re-runs of earlier ones.
HISTORY = 2000


@dataclass(frozen=True)
class Outcomes:
    """What a check as of ``as_of`` (unix ms) can see of a target's rows.

    ``rows``: the open times (unix ms) of the candles whose forecast was made by ``as_of``;
    ``scores``: for the rows whose outcome was realized by ``as_of``, its normalized score
    ``|y - forecast| / sigma`` (sigma the ex-ante sigma the interval was scaled by).
    """

    rows: np.ndarray
    scores: dict[int, float]
    as_of: int
    step: int


@dataclass(frozen=True)
class AciReport:
    """One level's ACI state after a check: the level in use is ``1 - alpha``."""

    target: str
    level: str
    alpha: float
    multiplier: float
    judged: int
    misses: int

    @property
    def realized_coverage(self) -> float | None:
        return 1 - self.misses / self.judged if self.judged else None


def prior_scores(multipliers: dict[str, float], count: int = PRIOR_SCORES) -> list[float]:
    """Scores whose quantile at each calibrated level is the card's multiplier: piecewise
    linear between the levels (from 0 at 0), an exponential tail above the highest."""
    levels = sorted((float(level), m) for level, m in multipliers.items())
    p = np.array([0.0, *(lv for lv, _ in levels)])
    q = np.maximum.accumulate(np.array([0.0, *(m for _, m in levels)]))
    grid = (np.arange(count) + 0.5) / count
    found = np.interp(grid, p, q)
    top, low = p[-1], p[-2]
    # the tail's scale from the two highest levels (a Laplace-like |score| tail)
    scale = (q[-1] - q[-2]) / math.log((1 - low) / (1 - top)) if len(p) > 2 else q[-1]
    tail = grid > top
    found[tail] = q[-1] + scale * np.log((1 - top) / (1 - grid[tail]))
    return [float(v) for v in found]


def fresh_state(calibration: IntervalCalibration, version: str | None, horizon: int) -> AciFile:
    """The state a newly served calibration starts from (the card's multipliers)."""
    scores = prior_scores(calibration.multipliers)
    levels = {
        level: AciLevel(coverage=float(level), alpha=1 - float(level), multiplier=multiplier)
        for level, multiplier in calibration.multipliers.items()
    }
    return AciFile(
        identity=identity(calibration, version), horizon=horizon, levels=levels, scores=scores
    )


def advance(
    state: AciFile | None,
    calibration: IntervalCalibration,
    version: str | None,
    horizon: int,
    outcomes: Outcomes,
) -> AciFile:
    """The state after the outcomes realized by ``outcomes.as_of`` (see the module); a state of
    another calibration is replaced by a fresh one first."""
    if state is None or state.identity != identity(calibration, version):
        state = fresh_state(calibration, version, horizon)
    states = _states(state, horizon)
    pending = {int(k): dict(v) for k, v in state.pending.items()}
    through = state.through
    for _, kind, row in _events(state, outcomes, horizon, pending):
        if kind == 0:
            served = pending.pop(row, None)
            score = outcomes.scores.get(row)
            if served is None or score is None or not math.isfinite(score):
                continue  # a gap, or a row older than the check's window: not judged
            for level, aci in states.items():
                aci.observe(score, score > served[level])
        else:
            pending[row] = {level: aci.multiplier() for level, aci in states.items()}
            through = max(through, row)
    if through == state.through and len(pending) == len(state.pending):
        return state  # nothing new was fixed or judged
    return _saved(state, states, pending, through, outcomes.as_of)


def report(state: AciFile, target: str, as_of: int) -> list[AciReport]:
    """Each level's state as it stood at ``as_of`` (from the history for an earlier check;
    the counts are those of the newest state)."""
    alphas = {level: s.alpha for level, s in state.levels.items()}
    if as_of < state.as_of:
        earlier = [entry for entry in state.history if entry[0] <= as_of]
        if not earlier:
            return []
        alphas = earlier[-1][1]
    return [
        AciReport(target, level, alphas[level], s.multiplier, s.judged, s.misses)
        for level, s in sorted(state.levels.items())
        if level in alphas
    ]


def _states(state: AciFile, horizon: int) -> dict[str, AciState]:
    return {
        level: AciState(
            coverage=s.coverage,
            horizon=horizon,
            gamma=aci_gamma(horizon),
            alpha=s.alpha,
            scores=deque(state.scores, maxlen=SCORE_WINDOW),
            misses=s.misses,
            judged=s.judged,
        )
        for level, s in state.levels.items()
    }


def _events(
    state: AciFile, outcomes: Outcomes, horizon: int, pending: dict[int, dict[str, float]]
) -> list[tuple[int, int, int]]:
    """(time, kind, row) in data time: kind 0 judges a row (its outcome is known at the close
    of the ``h``-th candle after it), kind 1 fixes a row's multiplier (at its own close);
    at one time, judging comes first (that outcome is known when the forecast is made)."""
    step = outcomes.step
    new = [int(r) for r in outcomes.rows if r > state.through and r + step <= outcomes.as_of]
    events = [(row + step, 1, row) for row in new]
    for row in [*pending, *new]:
        known = row + (horizon + 1) * step
        if known <= outcomes.as_of:
            events.append((known, 0, row))
    return sorted(events)


def _saved(
    state: AciFile,
    states: dict[str, AciState],
    pending: dict[int, dict[str, float]],
    through: int,
    as_of: int,
) -> AciFile:
    levels = {
        level: AciLevel(
            coverage=aci.coverage,
            alpha=aci.alpha,
            multiplier=aci.multiplier(),
            misses=aci.misses,
            judged=aci.judged,
        )
        for level, aci in states.items()
    }
    scores = list(next(iter(states.values())).scores) if states else state.scores
    entry = (as_of, {level: s.alpha for level, s in levels.items()})
    return state.model_copy(
        update={
            "through": through,
            "as_of": max(as_of, state.as_of),
            "levels": levels,
            "scores": scores,
            "pending": pending,
            "history": [*state.history, entry][-HISTORY:],
        }
    )
