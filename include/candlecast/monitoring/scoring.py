"""The platform forecasts every candle itself, so realized skill never waits for a client.

When a candles run materializes features, and when a train run commits a decision, every
materialized feature row is forecast with the model in force for it (:mod:`candlecast.modeling.
history`: the decision with the latest data time at or before the row's close), from the very
ONNX file that was deployed (its recorded sha256 checked), and logged in the forecast log with
source ``platform``, once per (stream, model version, feature time). Backfills are scored the
same way, point in time: a row is never forecast by a model trained on data after its candle.

Monitoring judges these forecasts once their candle has closed
(:mod:`candlecast.monitoring.performance`): per model version, and for the stream as served
(each row by the version in force for it, across champion changes).

The losing challenger of the decision in force for a row (``Decided.challengers``), when it
was exported, forecasts the same row in the shadow: logged with source ``shadow``, once per
(stream, version, feature time), point in time the same way. Monitoring compares it with the
champion on the same realized rows (:mod:`candlecast.monitoring.shadow`).

Each pass also forecasts the same span for every other configured target and horizon, each by
its own version in force (:mod:`candlecast.monitoring.target_scoring`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.features.online import offline_table
from candlecast.modeling import history
from candlecast.modeling.exported import EXPORT_FILE, ExportedModel
from candlecast.modeling.kinds.base import window_inputs
from candlecast.monitoring.target_scoring import TargetScored, score_targets
from candlecast.serving import forecast_log
from candlecast.serving.forecast_log import PLATFORM, SHADOW
from candlecast.serving.modelstore import verified_session
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import timeframe_ms, to_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """What one scoring pass did."""

    stream: str
    #: Feature rows in the span that had a model in force.
    rows: int
    #: Forecasts newly logged (a row already logged for its version is not logged again).
    logged: int
    #: Model versions used, with how many rows each.
    versions: dict[str, int]
    #: Why nothing was scored, when nothing was.
    reason: str = ""
    #: Shadow challenger versions used (source ``shadow``), with how many rows each.
    shadows: dict[str, int] = field(default_factory=dict)
    #: The same for each other configured target and horizon.
    targets: tuple[TargetScored, ...] = ()


def score(
    pair: PairConfig,
    start: datetime | None = None,
    end: datetime | None = None,
    settings: Settings | None = None,
    main: bool = True,
) -> Scored:
    """Forecast the stream's feature rows of the candles opening in ``[start, end)`` (default:
    from the first decision's data time, to the newest row) with the model in force for each,
    and log them; then every other configured target's (``main`` false: only those). Rows
    before the first decision have no model and are skipped.

    Raises:
        TamperedModelError: an exported model file differs from its recorded sha256.
    """
    settings = settings or get_settings()
    found = _score_main(pair, start, end, settings) if main else Scored(pair.stream.key, 0, 0, {})
    return replace(found, targets=tuple(score_targets(pair, start, end, settings)))


def _score_main(
    pair: PairConfig, start: datetime | None, end: datetime | None, settings: Settings
) -> Scored:
    """The next candle's return forecasts of :func:`score`."""
    stream = pair.stream
    decided = history.read(stream, settings)
    if not decided:
        return Scored(stream.key, 0, 0, {}, "no champion decision yet")
    step = timeframe_ms(pair.timeframe)
    first = min(d.since for d in decided)
    # the earliest candle a decision can forecast: the one closing at its data time
    begin = max(to_ms(start) if start else to_ms(first) - step, to_ms(first) - step)
    table = offline_table(stream, settings)
    newest = table.last_key()
    if newest is None:
        return Scored(stream.key, 0, 0, {}, "no feature rows yet")
    stop = to_ms(end) if end else newest + 1
    if stop <= begin:
        return Scored(stream.key, 0, 0, {}, "empty span")
    # only the versions in force for the span's closes: each load is a hash and a session
    needed = history.versions_in_force(decided, begin + step, stop + step)
    shadows = history.shadows_in_force(decided, begin + step, stop + step)
    models = {version: _Model.load(pair, version, settings) for version in sorted(needed | shadows)}
    widest = max((m.window for m in models.values() if m is not None), default=1)
    rows = table.read(begin - (widest - 1) * step, stop)
    if rows.empty:
        return Scored(stream.key, 0, 0, {}, "no feature rows in the span")
    rows = rows.sort_values("candle_ts").reset_index(drop=True)
    closes = rows["candle_ts"].to_numpy(dtype=np.int64) + step
    in_span = rows["candle_ts"].to_numpy(dtype=np.int64) >= begin
    chosen = np.where(in_span, history.versions_at(decided, closes), "")
    jobs = [(PLATFORM, v, chosen == v) for v in sorted(set(chosen) - {""})]
    jobs += [(SHADOW, v, in_span & history.shadows_at(decided, closes, v)) for v in sorted(shadows)]
    frames, counts, shadowed = _forecast_jobs(stream.key, jobs, models, rows, closes, step)
    if not frames:
        return Scored(stream.key, 0, 0, {}, "no complete feature row had a model in force")
    forecasts = pd.concat(frames, ignore_index=True)
    logged = forecast_log.write_platform(forecasts, settings)
    log.info(
        "%s: forecast %d candles (%s), %d newly logged",
        stream.label,
        sum(counts.values()),
        ", ".join([f"v{v}: {n}" for v, n in counts.items()]
                  + [f"shadow v{v}: {n}" for v, n in shadowed.items()]),
        logged,
    )  # fmt: skip
    return Scored(stream.key, sum(counts.values()), logged, counts, shadows=shadowed)


def _forecast_jobs(
    key: str,
    jobs: list[tuple[str, str, np.ndarray]],
    models: dict[str, _Model | None],
    rows: pd.DataFrame,
    closes: np.ndarray,
    step: int,
) -> tuple[list[pd.DataFrame], dict[str, int], dict[str, int]]:
    """Each (source, version, rows picked) job's forecasts, and how many rows each champion
    and each shadow version forecast."""
    frames: list[pd.DataFrame] = []
    counts: dict[str, int] = {}
    shadowed: dict[str, int] = {}
    for source, version, mine in jobs:
        model = models.get(version)
        if model is None:
            if source == PLATFORM:
                log.warning("%s: v%s was never exported; its rows are not scored", key, version)
            continue  # a challenger that failed its parity check has no shadow forecasts
        found = _forecast(model, rows, mine, closes, step)
        if found is None:
            continue
        frames.append(found.assign(stream=key, model_version=version, source=source))
        (counts if source == PLATFORM else shadowed)[version] = len(found)
    return frames, counts, shadowed


def _forecast(
    model: _Model, rows: pd.DataFrame, mine: np.ndarray, closes: np.ndarray, step: int
) -> pd.DataFrame | None:
    """The model's forecasts of the complete rows picked by ``mine`` (None when none is)."""
    x, usable = window_inputs(rows, model.features, model.window, step)
    usable &= mine & np.isfinite(x).all(axis=1)
    if not usable.any():
        return None
    predicted = model.run(x[usable])
    feature_ts = closes[usable]
    half = model.half_width
    return pd.DataFrame(
        {
            "feature_ts": feature_ts,
            "target_ts": feature_ts + step,
            "predicted": predicted,
            "lower": predicted - half if half is not None else np.nan,
            "upper": predicted + half if half is not None else np.nan,
            "served_at": int(time.time() * 1000),
        }
    )


@dataclass(frozen=True)
class _Model:
    """An exported model version: its ONNX session and what its metadata says."""

    session: Any
    input_name: str
    features: list[str]
    window: int
    half_width: float | None

    @classmethod
    def load(cls, pair: PairConfig, version: str, settings: Settings) -> _Model | None:
        """The version's exported model, or None when it was never exported (or exported by
        an older candlecast, without a card: the next export writes it again).

        Raises:
            TamperedModelError: the ONNX file differs from its recorded sha256.
        """
        folder = pair.stream.model_dir(settings.paths.models, version)
        path = folder / "model.onnx"
        if not (path.exists() and (folder / EXPORT_FILE).exists()):
            return None
        exported = ExportedModel.model_validate_json((folder / EXPORT_FILE).read_text())
        card = exported.card
        name = f"{pair.stream.key}/v{version}/{path.name}"
        session = verified_session(path, exported.onnx_sha256, name)
        return cls(
            session=session,
            input_name=session.get_inputs()[0].name,
            features=list(card.features),
            window=card.window,
            half_width=card.interval_half_width,
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)
