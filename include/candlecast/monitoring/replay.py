"""Replay the retraining loop over history, in process and point in time.

Candles arrive one check interval at a time (``check_ms``, the monitor DAG's cadence). At the
start the configured kinds are trained on the window ending there and the gate decides; from
then on each policy decides when to train again:

* ``never``: the first decision holds to the end;
* ``cadence``: a retrain every ``cadence_ms`` of data time (``training.schedule``);
* ``triggers``: the cadence, plus a retrain whenever a monitoring check fires
  (:func:`candlecast.monitoring.decisions.decide`: data drift against the latest decision's
  training window, realized-skill decay or coverage collapse of the champion in force over the
  last ``monitoring.window_candles`` candles), rate limited by the cooldown in data time.

Every candle closing at or after the first decision is forecast by the champion in force when
it closed (a model trained on data up to ``T`` forecasts only rows closing at or after ``T``)
and judged once its target is realized. Fits are deterministic functions of the window end,
so policies share them (:class:`FitCache`); each policy is still charged the fit time of every
decision it makes (``compute_s``), as if it had trained alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.features.engineering import FEATURE_COLUMNS, compute_features, next_return
from candlecast.monitoring import decisions
from candlecast.monitoring.drift import data_drift
from candlecast.monitoring.replay_fit import Candidate, Forecaster, History, gate, train_at
from candlecast.timeframes import timeframe_ms

POLICIES = ("never", "cadence", "triggers")
#: Cron presets a period can be given as (``training.schedule``, ``monitoring.schedule``).
_PRESETS = {"@hourly": "1h", "@daily": "1d", "@weekly": "7d"}
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
START, CADENCE, RATE_LIMITED = "start of the replay", "cadence", "rate_limited"
#: The (target, horizon) the replay forecasts, as monitoring names it.
TARGET_KEY = "return@1"


def parse_period(text: str) -> int:
    """A period in unix ms: ``7d``, ``12h``, ``30m``, ``2w`` or a preset (``@daily``).

    Raises:
        ValueError: a cron expression or anything else (give the period as ``7d``).
    """
    value = _PRESETS.get(text.strip(), text.strip())
    unit = value[-1:].lower()
    if unit not in _UNIT_MS or not value[:-1].isdigit() or int(value[:-1]) <= 0:
        raise ValueError(f"{text!r} is not a period such as 1d, 7d, 12h or @daily")
    return int(value[:-1]) * _UNIT_MS[unit]


def history_of(candles: pd.DataFrame, timeframe: str, market: str) -> History:
    """Feature rows of the whole history (the feature function is causal: a row uses only its
    candle and earlier ones) joined with each row's next-candle return; rows without one (the
    last candle, a candle before a gap) are left out."""
    rows = compute_features(candles.reset_index(drop=True), timeframe, market)
    targets = next_return(candles.reset_index(drop=True), timeframe)
    frame = rows.merge(targets, on="event_timestamp", how="inner")
    frame = frame.sort_values("event_timestamp").reset_index(drop=True)
    return History(frame, timeframe_ms(timeframe))


@dataclass(frozen=True)
class Step:
    """One decision of a policy: when, why, what the gate said and who serves after it."""

    time: int
    policy: str
    reason: str
    outcome: str
    kind: str
    changed: bool
    gate_reason: str = ""

    @property
    def triggered(self) -> bool:
        """A retrain asked by a monitoring trigger (not the start, the cadence or a request
        the cooldown refused)."""
        return self.outcome != RATE_LIMITED and self.reason not in (START, CADENCE)


@dataclass
class PolicyRun:
    """One policy's decisions, champions and per-candle forecasts over the judged rows."""

    name: str
    steps: list[Step] = field(default_factory=list)
    champions: list[Forecaster] = field(default_factory=list)
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    half_width: np.ndarray = field(default_factory=lambda: np.zeros(0))
    champion: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    compute_s: float = 0.0
    #: The training window ``[start, end)`` of the latest decision: the drift reference.
    reference: tuple[int, int] = (0, 0)

    @property
    def retrains(self) -> int:
        """Trainings after the first decision (rate-limited requests train nothing)."""
        return sum(step.outcome != RATE_LIMITED for step in self.steps) - 1


@dataclass(frozen=True)
class Replay:
    """Every policy's run over the same judged rows (positions in ``history``)."""

    history: History
    rows: np.ndarray
    runs: dict[str, PolicyRun]
    start: int
    end: int


class FitCache:
    """Trainings by window end: the same window gives the same fit, whichever policy asks."""

    def __init__(self, history: History, pair: PairConfig, kinds: list[str]):
        self.history, self.pair, self.kinds = history, pair, kinds
        self._found: dict[int, Candidate] = {}

    def at(self, end_ms: int) -> Candidate:
        if end_ms not in self._found:
            self._found[end_ms] = train_at(self.history, self.pair, self.kinds, end_ms)
        return self._found[end_ms]


def replay(
    history: History,
    pair: PairConfig,
    kinds: list[str],
    span: tuple[int, int],
    *,
    policies: Iterable[str] = POLICIES,
    cadence_ms: int = 86_400_000,
    check_ms: int = 86_400_000,
) -> Replay:
    """Run each policy over ``span`` (unix ms ``[start, end)``) on the same history.

    Raises:
        NotEnoughHistoryError: too little history before the start to train on.
        ValueError: an unknown policy, or no candle to judge in the span.
    """
    start, end = span
    close = history.close_ms
    # judged: rows closing in [start, end) whose target is realized by the end
    rows = np.flatnonzero((close >= start) & (close + history.step_ms <= end))
    if not len(rows):
        raise ValueError("no candle closes inside the replayed span")
    fits = FitCache(history, pair, kinds)
    runs = {}
    for name in policies:
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
        runs[name] = _run(name, fits, rows, span, cadence_ms, check_ms)
    return Replay(history, rows, runs, start, end)


def _run(
    name: str, fits: FitCache, rows: np.ndarray, span: tuple[int, int], cadence: int, every: int
) -> PolicyRun:
    start, end = span
    run = PolicyRun(
        name,
        predicted=np.zeros(len(rows)),
        half_width=np.full(len(rows), np.nan),
        champion=np.zeros(len(rows), dtype=np.int64),
    )
    _decide(run, fits, rows, start, START)
    limits = decisions.Thresholds.of(fits.pair.monitoring)
    last_cadence, last_request = start, None
    for now in range(start + every, end, every):
        if name == "never":
            break
        if now - last_cadence >= cadence:
            _decide(run, fits, rows, now, CADENCE)
            last_cadence = now
            continue
        if name != "triggers":
            continue
        began = time.perf_counter()
        check = decisions.decide(_evidence(run, fits, rows, now), limits, last_request, _dt(now))
        run.compute_s += time.perf_counter() - began
        if check.rate_limited:
            kind = run.champions[-1].kind
            run.steps.append(Step(now, name, check.reason, RATE_LIMITED, kind, False))
        elif check.retrain:
            _decide(run, fits, rows, now, check.reason)
            last_request = _dt(now)
    return run


def _decide(run: PolicyRun, fits: FitCache, rows: np.ndarray, now: int, reason: str) -> None:
    """Train at ``now``, let the gate decide and install the winner on the rows from ``now``."""
    candidate = fits.at(now)
    began = time.perf_counter()
    current = run.champions[-1] if run.champions else None
    verdict, winner = gate(fits.history, fits.pair, candidate, current)
    assert winner is not None  # only a KEPT verdict keeps the current one, and there is one
    # a refreshed persistence (the newest holdout's interval) is the same champion
    changed = current is None or winner.kind != current.kind or winner.model is not current.model
    if winner is not current:
        run.champions.append(winner)
        later = fits.history.close_ms[rows] >= now
        run.predicted[later] = winner.predict(fits.history, rows[later])
        run.half_width[later] = np.nan if winner.half_width is None else winner.half_width
        run.champion[later] = len(run.champions) - 1
    run.compute_s += candidate.fit_s + time.perf_counter() - began
    outcome = verdict.outcome.value
    run.steps.append(Step(now, run.name, reason, outcome, winner.kind, changed, verdict.reason))
    # the reference window moves with every decision, even one that keeps the champion
    run.reference = candidate.challenger.window


def _evidence(run: PolicyRun, fits: FitCache, rows: np.ndarray, now: int) -> decisions.Evidence:
    """What the monitor check sees at ``now``: drift of the last window against the latest
    decision's training window, and the realized skill and coverage of the champion in force
    over the forecasts of that window whose targets are known."""
    history, champion = fits.history, run.champions[-1]
    close, step = history.close_ms, history.step_ms
    width = fits.pair.monitoring.window_candles * step
    first, last = run.reference
    reference = history.frame[(close - step >= first) & (close <= last)]
    current = history.frame[(close > now - width) & (close <= now)]
    columns = _columns(champion)
    limits = decisions.Thresholds.of(fits.pair.monitoring)
    drift = data_drift(reference, current, columns, limits.feature_threshold, limits.drift_share)
    close_rows = close[rows]
    judged = (close_rows >= max(champion.since, now - width)) & (close_rows + step <= now)
    target = history.target[rows[judged]]
    errors = run.predicted[judged] - target
    ratio = _ratio(errors, target)
    inside = np.abs(errors) <= run.half_width[judged]
    coverage = ((TARGET_KEY, float(inside.mean()), int(judged.sum())),) if judged.any() else ()
    return decisions.Evidence(
        drift_share=drift.share if drift.features else None,
        drifted_features=tuple(drift.drifted),
        features=len(drift.features),
        rmse_ratio=ratio,
        forecasts=int(judged.sum()),
        coverage=coverage if champion.half_width is not None else (),
    )


def _columns(champion: Forecaster) -> list[str]:
    return list(champion.model.spec.features) if champion.model else list(FEATURE_COLUMNS)


def _ratio(errors: np.ndarray, target: np.ndarray) -> float | None:
    base = float(np.sqrt(np.mean(target**2))) if len(target) else 0.0
    return float(np.sqrt(np.mean(errors**2))) / base if base > 0 else None


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
