"""The platform forecasts every candle for every other configured target too, point in time.

The next candle's return is scored by :mod:`candlecast.monitoring.scoring`; this module does
the same for each other configured (target, horizon) of the stream (:func:`candlecast.
targets.configured_targets`). Each feature row is forecast by the target's version in force
for it: the decision with the latest data time at or before the row's close in the target's
own decision history (:func:`candlecast.modeling.history.target_history_path`, written by
target training), loaded from its exported folder ``v<version>`` with its sha256 checked
(:func:`candlecast.serving.targets.load_version`, what the service loads). The rows are
:func:`~candlecast.modeling.target_evaluation.target_frame`'s, the one feature function of
training, evaluation and monitoring, kept before their label is known; a forecast made at a
candle's close is for the close ``horizon`` candles later.

Return targets log the card's nominal 90% interval (its calibrated multiplier, the row's
volatility bin's where the card has bins, times the row's sigma): the online ACI state moves
with later outcomes, so it is not what was known then.

A row is what the service reads for its candle (:func:`candlecast.serving.targets.forecasts`):
the stream's features as materialized, read from the Feast offline table that a candles run
writes before it scores (:func:`candlecast.features.online.offline_table`, the rows the main
target's scoring reads; not computed again), beside the volatility features, which the table
does not hold, computed from the validated candles. A candle without a row in that table is not
forecast, as the main target's is not: the run that writes its row scores it. The volatility
features include an EWMA, so the warm-up read before the span is fixed (:func:`_warm_up`): the
same span gives the same forecasts whenever it is scored. Each row is logged once per (stream,
target, version, feature time, source). A decision's losing challenger
(:mod:`candlecast.modeling.target_export`) forecasts the rows that decision is in force for
too, logged as source ``shadow``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.quality import usable_candles
from candlecast.data.store import PartitionedTable
from candlecast.features.online import offline_table
from candlecast.features.volatility import volatility_features
from candlecast.modeling import history
from candlecast.modeling.target_evaluation import target_frame
from candlecast.serving import forecast_log
from candlecast.serving.forecast_log import PLATFORM, SHADOW
from candlecast.serving.targets import ServedTarget, load_version
from candlecast.settings import Settings, get_settings
from candlecast.targets import Target, configured_targets
from candlecast.timeframes import timeframe_ms, to_ms, volatility_warmup_candles

log = logging.getLogger(__name__)

#: The interval level logged with return targets' forecasts (monitoring's coverage level).
LEVEL = "0.9"


@dataclass(frozen=True)
class TargetScored:
    """What one scoring pass did for one (target, horizon)."""

    target_key: str
    #: Feature rows in the span that had a version in force.
    rows: int
    #: Forecasts newly logged.
    logged: int
    #: Versions used, with how many rows each.
    versions: dict[str, int]
    #: Why nothing was scored, when nothing was.
    reason: str = ""
    #: Shadow versions used (the gate's losers named in the history), with how many rows each.
    shadows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Span:
    begin: int  # the first candle's open (unix ms), inclusive
    stop: int  # exclusive
    step: int


def score_targets(
    pair: PairConfig,
    start: datetime | None = None,
    end: datetime | None = None,
    settings: Settings | None = None,
) -> list[TargetScored]:
    """Forecast every other configured target's rows of the candles opening in ``[start,
    end)`` (default: from the first decision's data time to the newest feature row) that have
    a feature row, with the version in force for each, and log them; one result per
    configured target.

    Raises:
        TamperedModelError: an exported model file differs from its recorded sha256.
    """
    settings = settings or get_settings()
    targets = configured_targets(pair)
    decided = {
        t.key: history.read(
            pair.stream, settings, history.target_history_path(pair.stream, t.key, settings)
        )
        for t in targets
    }
    live = [t for t in targets if decided[t.key]]
    idle = [
        TargetScored(t.key, 0, 0, {}, "no champion decision yet")
        for t in targets
        if not decided[t.key]
    ]
    if not live:
        return idle
    step = timeframe_ms(pair.timeframe)
    first = to_ms(min(d.since for t in live for d in decided[t.key])) - step
    table = offline_table(pair.stream, settings)
    newest = table.last_key()
    begin = max(to_ms(start) if start else first, first)
    stop = to_ms(end) if end else (newest or 0) + 1
    span = _Span(begin, stop, step)
    horizons = tuple(sorted({t.horizon for t in live}))
    inputs = _inputs(pair, table, span, horizons, settings)
    if isinstance(inputs, str):
        return idle + [TargetScored(t.key, 0, 0, {}, inputs) for t in live]
    scored = [_score_target(pair, t, decided[t.key], inputs, span, settings) for t in live]
    return idle + scored


@dataclass(frozen=True, eq=False)
class _Inputs:
    """What every target's rows of the span are made of."""

    candles: pd.DataFrame  # validated, sorted by ``ts``, from the warm-up before the span on
    features: pd.DataFrame  # the span's rows of the offline table
    volatility: pd.DataFrame  # the candles' volatility features, at every target's horizon


def _inputs(
    pair: PairConfig,
    table: PartitionedTable,
    span: _Span,
    horizons: tuple[int, ...],
    settings: Settings,
) -> _Inputs | str:
    """The span's feature rows from the offline ``table``, with the candles and the volatility
    features at ``horizons`` that the rows lack; or why there are none."""
    features = table.read(span.begin, span.stop) if span.begin < span.stop else None
    if features is None or features.empty:
        return "no feature rows in the span"
    first = span.begin - _warm_up(pair) * span.step
    candles = usable_candles(pair, validated_table(pair.stream, settings).read(first, span.stop))
    if candles.empty:
        return "no candles in the span"
    ordered = candles.sort_values("ts", kind="stable").reset_index(drop=True)
    return _Inputs(ordered, features, volatility_features(ordered, pair.timeframe, horizons))


def _warm_up(pair: PairConfig) -> int:
    """Candles read before the span for its volatility features: their reach, and the
    features' warm-up on top, as when the features were computed here too (rolling sums
    depend on where they start in their last bits: the same reach keeps every forecast
    logged before the same)."""
    return volatility_warmup_candles(pair.timeframe) + pair.features.warmup_candles


def _score_target(
    pair: PairConfig,
    target: Target,
    decided: list[history.Decided],
    inputs: _Inputs,
    span: _Span,
    settings: Settings,
) -> TargetScored:
    """One target's rows of the span forecast by the versions in force, and logged."""
    frame = target_frame(
        inputs.candles, pair.timeframe, pair.stream.market_key, target, inputs.features,
        labelled=False, volatility=inputs.volatility,
    )  # fmt: skip
    opened = frame["candle_ts"].to_numpy(np.int64)
    frame = frame[(opened >= span.begin) & (opened < span.stop)].reset_index(drop=True)
    closes = frame["candle_ts"].to_numpy(np.int64) + span.step
    window = (span.begin + span.step, span.stop + span.step)
    needed = history.versions_in_force(decided, *window)
    shadows = history.shadows_in_force(decided, *window)
    models = {v: _load(pair, target, v, settings) for v in sorted(needed | shadows)}
    chosen = history.versions_at(decided, closes)
    jobs = [(PLATFORM, v, chosen == v) for v in sorted(set(chosen) - {""})]
    jobs += [(SHADOW, v, history.shadows_at(decided, closes, v)) for v in sorted(shadows)]
    found: list[pd.DataFrame] = []
    counts: dict[str, dict[str, int]] = {PLATFORM: {}, SHADOW: {}}
    for source, version, mine in jobs:
        model = models.get(version)
        forecasts = None if model is None else _forecast(model, frame, mine, closes, span.step)
        if forecasts is None:
            continue
        found.append(forecasts.assign(model_version=version, source=source))
        counts[source][version] = len(forecasts)
    if not found:
        return TargetScored(target.key, 0, 0, {}, "no complete feature row had a model in force")
    rows = pd.concat(found, ignore_index=True).assign(stream=pair.stream.key, target_key=target.key)
    logged = forecast_log.write_platform(rows, settings)
    log.info(
        "%s %s: forecast %d candles (%s), %d newly logged",
        pair.stream.label,
        target.key,
        sum(counts[PLATFORM].values()),
        ", ".join(f"v{v}: {n}" for v, n in counts[PLATFORM].items()),
        logged,
    )
    return TargetScored(
        target.key, sum(counts[PLATFORM].values()), logged, counts[PLATFORM],
        shadows=counts[SHADOW],
    )  # fmt: skip


def _load(
    pair: PairConfig, target: Target, version: str, settings: Settings
) -> ServedTarget | None:
    """The target's exported ``version``, or None when it was never exported.

    Raises:
        TamperedModelError: its ONNX file differs from its recorded sha256.
    """
    folder = pair.stream.target_dir(settings.paths.models, target.key) / f"v{version}"
    if not (folder / "model.onnx").exists():
        log.warning("%s %s: v%s was never exported; its rows are not scored",
                    pair.stream.label, target.key, version)  # fmt: skip
        return None
    return load_version(target, folder)


def _forecast(
    model: ServedTarget, frame: pd.DataFrame, mine: np.ndarray, closes: np.ndarray, step: int
) -> pd.DataFrame | None:
    """The version's forecasts of the complete rows picked by ``mine`` (None when none is),
    as the service computes them from a row."""
    card = model.card
    x = frame[card.features].to_numpy(np.float64)
    usable = mine & np.isfinite(x).all(axis=1)
    if not usable.any():
        return None
    out = model.session.run(None, {model.input_name: x[usable].astype(np.float32)})[0]
    predicted = np.asarray(out, dtype=np.float64).reshape(-1)
    half = np.full(len(predicted), np.nan)
    calibration = card.intervals
    if calibration is not None and LEVEL in calibration.multipliers:
        inputs = frame.loc[usable, calibration.inputs].to_numpy(np.float64)
        half = calibration.row_multipliers(inputs, LEVEL) * np.asarray(calibration.sigma(inputs))
    feature_ts = closes[usable]
    return pd.DataFrame(
        {
            "feature_ts": feature_ts,
            "target_ts": feature_ts + model.target.horizon * step,
            "predicted": predicted,
            "lower": predicted - half,
            "upper": predicted + half,
            "served_at": int(time.time() * 1000),
        }
    )
