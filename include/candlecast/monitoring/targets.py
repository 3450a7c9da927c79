"""How each other configured target did on the candles that followed, judged from the
forecasts the platform logged point in time (:mod:`candlecast.monitoring.target_scoring`):
each row by the version that was in force for it, joined with its outcome once its horizon
has passed. Per model version and for the stream as served (across champion changes), with
the count and "not judged yet" below the minimum (:mod:`candlecast.monitoring.target_skill`):
the target's scores as the gate computes them, the primary score's ratio to persistence on the
same rows, directional accuracy and the logged 90% interval's coverage for returns, and the
newest realized forecast beside its outcome. The target's shadow challengers (the gate's
losers, forecast in the shadow) are judged against it as served on the same rows, by the
target gate's rule (:func:`candlecast.monitoring.shadow.target_shadow_skill`).

The intervals' online ACI state (:mod:`candlecast.monitoring.aci`) is the served champion's:
it belongs to the calibration the service scales by now, so it is moved by recomputing the
served champion's forecasts of the window's rows (a target forecast depends only on its
features, so this is what the service answered for those rows while that champion served).
The next candle's return (the main champion's target) has intervals but no card here: its ACI
state is judged on "no change", as its calibration is (:func:`main_aci`).
"""

from __future__ import annotations

import fcntl
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.quality import usable_candles
from candlecast.features.volatility import har_windows
from candlecast.modeling import history
from candlecast.modeling.card import IntervalCalibration
from candlecast.modeling.target_evaluation import target_frame
from candlecast.monitoring import aci, target_skill
from candlecast.monitoring.shadow import ShadowSkill, shadows_in_force, target_shadow_skill
from candlecast.monitoring.target_skill import Skill
from candlecast.serving import aci as aci_state
from candlecast.serving import targets as served_targets
from candlecast.serving.forecast_log import PLATFORM, SHADOW, read_forecasts
from candlecast.settings import Settings
from candlecast.targets import MAIN, Target, configured_targets, get_target
from candlecast.timeframes import timeframe_ms, to_ms


@dataclass(frozen=True)
class TargetRealized:
    """A target's realized figures in a check's window, as served (each row by the version in
    force for it); ``version`` and ``kind`` are the champion's at the window's end."""

    key: str
    version: str | None
    kind: str
    forecasts: int
    metric: str
    score: float | None
    persistence: float | None
    ratio: float | None
    coverage_90: float | None
    #: The newest realized row's forecast and outcome in the answer's units (annualized
    #: volatility; log return).
    newest_forecast: float | None = None
    newest_realized: float | None = None
    #: The intervals' ACI state per level after this check.
    aci: tuple[aci.AciReport, ...] = ()
    #: ``judged``, or ``not judged yet`` with how many realized forecasts of the minimum.
    state: str = ""
    #: Every score of the target (the gate's), as served.
    scores: dict[str, float] = field(default_factory=dict)
    directional_accuracy: float | None = None
    majority_rate: float | None = None
    #: Each model version's figures on its own logged rows realized in the window.
    by_version: dict[str, Skill] = field(default_factory=dict)
    #: The gate's losers forecast in the shadow, each against the target as served on the
    #: same realized rows (:func:`candlecast.monitoring.shadow.target_shadow_skill`).
    shadows: tuple[ShadowSkill, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["shadows"] = [s.to_dict() for s in self.shadows]
        return found


def realized_targets(
    pair: PairConfig,
    span: tuple[datetime, datetime],
    settings: Settings,
    min_forecasts: int = 0,
) -> list[TargetRealized]:
    """Each decided target's realized figures from the logged forecasts whose outcome was
    realized in ``span`` (``start < target time <= end``)."""
    served = {s.target.key: s for s in served_targets.load(pair, settings, {})}
    # a champion trained before decisions were recorded still moves its interval state
    targets = [
        t for t in configured_targets(pair) if t.key in served or _decided(pair, t, settings)
    ]
    if not targets:
        return []
    reach = max(t.horizon for t in targets)
    candles = _candles(pair, span, settings, reach)
    if candles.empty:
        return []
    return [
        _realized(pair, t, served.get(t.key), candles, span, settings, min_forecasts)
        for t in targets
    ]


def main_aci(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings
) -> list[aci.AciReport]:
    """The next candle's return intervals' ACI state after the outcomes realized by the end
    of ``span`` (none before target training calibrated them)."""
    folder = pair.stream.target_dir(settings.paths.models, MAIN)
    try:
        calibration = IntervalCalibration.model_validate_json(
            (folder / served_targets.INTERVALS).read_text()
        )
    except (OSError, ValueError):
        return []
    candles = _candles(pair, span, settings)
    if candles.empty:
        return []
    target = get_target("return", 1)
    frame = _window(pair, target, candles, span, calibration.inputs)
    predicted = np.zeros(len(frame))  # "no change", as the calibration judged it
    return _advance(pair, folder, target, calibration, None, frame, predicted, candles, span)


def _decided(pair: PairConfig, target: Target, settings: Settings) -> list[history.Decided]:
    path = history.target_history_path(pair.stream, target.key, settings)
    return history.read(pair.stream, settings, path)


def _candles(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings, horizon: int = 1
) -> pd.DataFrame:
    """The validated candles of ``span``, the warm-up of its rows' features, and the rows
    before it whose outcome (``horizon`` candles later) was realized in it."""
    step = timeframe_ms(pair.timeframe)
    reach = har_windows(pair.timeframe)[2] + 2 * pair.features.warmup_candles + horizon
    stored = validated_table(pair.stream, settings).read(
        to_ms(span[0]) - reach * step, to_ms(span[1])
    )
    return usable_candles(pair, stored)


def _window(
    pair: PairConfig,
    target: Target,
    candles: pd.DataFrame,
    span: tuple[datetime, datetime],
    features: list[str],
) -> pd.DataFrame:
    """The target's labelled rows closing in ``span`` that have ``features``."""
    frame = target_frame(candles, pair.timeframe, pair.stream.market_key, target)
    inside = (frame["event_timestamp"] > pd.Timestamp(span[0])) & (
        frame["event_timestamp"] <= pd.Timestamp(span[1])
    )
    return frame[inside].dropna(subset=features).reset_index(drop=True)


def _sigmas(frame: pd.DataFrame, calibration: IntervalCalibration) -> np.ndarray:
    """Each row's ex-ante sigma of the horizon's return, as the service scales intervals (the
    card's fitted sigma of the row's columns, the function evaluation scores)."""
    return np.asarray(calibration.sigma(frame[calibration.columns].to_numpy(np.float64)))


def _rows_by_bin(
    pair: PairConfig, calibration: IntervalCalibration, candles: pd.DataFrame, rows: np.ndarray
) -> dict[int | None, np.ndarray]:
    """The candle rows each ACI state moves by: all of them without volatility bins, else
    each bin's (a row whose bin column is not known yet, after a gap, is in none)."""
    if calibration.bin_column is None:
        return {None: rows}
    from candlecast.features.volatility import volatility_features

    features = volatility_features(candles, pair.timeframe)
    known = features[calibration.bin_column].notna().to_numpy()
    stamps = features["candle_ts"].to_numpy(np.int64)[known]
    bins = calibration.bins(features[calibration.bin_column].to_numpy(np.float64)[known])
    return {
        number: rows[np.isin(rows, stamps[bins == number])]
        for number in range(len(calibration.bin_multipliers))
    }


def _advance(
    pair: PairConfig,
    folder: Path,
    target: Target,
    calibration: IntervalCalibration,
    version: str | None,
    frame: pd.DataFrame,
    predicted: np.ndarray,
    candles: pd.DataFrame,
    span: tuple[datetime, datetime],
) -> list[aci.AciReport]:
    """Move the target's persisted ACI state by the rows realized in the window."""
    step = timeframe_ms(pair.timeframe)
    start, as_of = to_ms(span[0]), to_ms(span[1])
    y = frame["target"].to_numpy(np.float64)
    scores = np.abs(y - predicted) / _sigmas(frame, calibration)
    rows = candles["ts"].to_numpy(np.int64)
    realized = dict(zip(frame["candle_ts"].astype(np.int64).tolist(), scores.tolist(), strict=True))
    folder.mkdir(parents=True, exist_ok=True)
    reports = []
    for number, mine in _rows_by_bin(pair, calibration, candles, rows[rows + step > start]).items():
        outcomes = aci.Outcomes(rows=mine, scores=realized, as_of=as_of, step=step)
        path = aci_state.state_path(folder, number)
        # a check by hand beside the monitor DAG's: one read-advance-write at a time, or one
        # check's judgments would be lost
        with path.with_name(f".{path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            before = aci_state.read_state(path)
            binned = calibration.for_bin(number)
            after = aci.advance(before, binned, version, target.horizon, outcomes)
            if after is not before:
                aci_state.write_state(path, after)
        label = target.key if number is None else f"{target.key}:bin{number}"
        reports += aci.report(after, label, as_of)
    return reports


def _realized(
    pair: PairConfig,
    target: Target,
    served: served_targets.ServedTarget | None,
    candles: pd.DataFrame,
    span: tuple[datetime, datetime],
    settings: Settings,
    min_forecasts: int,
) -> TargetRealized:
    step = timeframe_ms(pair.timeframe)
    decided = _decided(pair, target, settings)
    start, end = to_ms(span[0]), to_ms(span[1])
    logged = read_forecasts(
        pair.stream.key,
        start - (target.horizon + 1) * step,
        end + 1,
        settings,
        target_key=target.key,
    )
    logged = logged[(logged["target_ts"] > start) & (logged["target_ts"] <= end)]
    frame = target_frame(candles, pair.timeframe, pair.stream.market_key, target)
    realized = target_skill.outcomes(frame, target, step)
    joined = target_skill.join_outcomes(logged[logged["source"] == PLATFORM], realized)
    rows = target_skill.as_served(joined, decided)
    shadows = shadows_in_force(logged[logged["source"] == SHADOW], decided)
    shadow_rows = target_skill.join_outcomes(shadows, realized)
    found = target_skill.skill(target, rows, min_forecasts)
    current = history.as_of(decided, span[1])
    newest = rows.iloc[-1] if len(rows) else None
    return TargetRealized(
        key=target.key,
        # a champion trained before decisions were recorded: the served card says who it is
        version=current.version if current else (served.card.version if served else None),
        kind=current.kind if current else (served.card.kind if served else ""),
        forecasts=found.forecasts,
        metric=target.primary,
        score=found.score,
        persistence=found.persistence,
        ratio=found.ratio,
        coverage_90=found.coverage_90,
        newest_forecast=None if newest is None else _in_units(target, newest.predicted, pair),
        newest_realized=None if newest is None else _in_units(target, newest.realized, pair),
        aci=tuple(_served_aci(pair, served, candles, span, settings)) if served else (),
        state=found.state,
        scores=found.scores,
        directional_accuracy=found.directional_accuracy,
        majority_rate=found.majority_rate,
        by_version=target_skill.by_version(target, joined, min_forecasts),
        shadows=tuple(target_shadow_skill(pair, target, shadow_rows, rows, min_forecasts)),
    )


def _served_aci(
    pair: PairConfig,
    served: served_targets.ServedTarget,
    candles: pd.DataFrame,
    span: tuple[datetime, datetime],
    settings: Settings,
) -> list[aci.AciReport]:
    """The served champion's interval state after the window's outcomes (none without
    intervals): moved by its forecasts of the window's rows (see the module)."""
    target, card = served.target, served.card
    if card.intervals is None:
        return []
    frame = _window(pair, target, candles, span, card.features)
    if frame.empty:
        return []
    x = frame[card.features].to_numpy(np.float32)
    predicted = np.asarray(served.session.run(None, {served.input_name: x})[0], np.float64)
    folder = pair.stream.target_dir(settings.paths.models, target.key)
    return _advance(
        pair, folder, target, card.intervals, card.version, frame, predicted.reshape(-1),
        candles, span,
    )  # fmt: skip


def _in_units(target: Target, value: float, pair: PairConfig) -> float:
    """A forecast or outcome as users read it: annualized volatility, or the log return."""
    answer = target.answer(float(value), 1.0, pair.timeframe)
    return float(answer.get("annualized_volatility", value))
