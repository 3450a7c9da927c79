"""Every configured target and horizon of a stream, answered beside the next-candle forecast.

A target's champion is served from ``<models>/<stream>/targets/<target key>/champion`` (an ONNX
model carrying its :class:`~candlecast.modeling.card.ModelCard`), written by target training
after its parity check. Its inputs are the stream's features and volatility features of the
newest validated candle, computed by the same functions training used, from the validated
candles (the volatility features' windows reach a month back, more than the online store
keeps). Everything here runs when a stream's snapshot is rebuilt, never per request.

Return forecasts carry intervals at every calibrated level: ``forecast +- m * sigma`` with sigma
the card's forecast of the horizon's volatility (its fitted coefficients on the row's volatility
features, :meth:`~candlecast.modeling.card.IntervalCalibration.sigma`, the computation
evaluation scores) and ``m`` the holdout's normalized conformal quantile, moved online by
adaptive conformal inference: once monitoring has judged realized outcomes of the served
champion, ``m`` is the level's current multiplier from the persisted state
(:mod:`candlecast.serving.aci`, re-read only when its file changes), and each band says the
level in use (``aci_level``, ``1 - alpha``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.store import PartitionedTable
from candlecast.modeling.card import ARTIFACT, SHA256_FILE, IntervalCalibration, ModelCard
from candlecast.serving import aci
from candlecast.serving.modelstore import verified_session
from candlecast.settings import Settings
from candlecast.targets import MAIN, Target, configured_targets
from candlecast.timeframes import ms_to_iso, timeframe_ms

log = logging.getLogger(__name__)

#: The main target's interval calibration (written by target training).
INTERVALS = "intervals.json"
#: The intervals' online states, shared by the service's snapshots (mtime-checked reads).
STATES = aci.StateReader()


@dataclass(frozen=True)
class ServedTarget:
    """A target champion loaded for serving."""

    target: Target
    card: ModelCard
    session: Any
    input_name: str
    version_dir: str


@dataclass(frozen=True)
class TargetForecasts:
    """What a snapshot carries besides its next-candle forecast."""

    answers: tuple[dict[str, Any], ...]
    #: Intervals of the next-candle return (by level), None without a calibration.
    main_intervals: dict[str, Any] | None
    missing: tuple[str, ...]


def load(
    pair: PairConfig, settings: Settings, cache: dict[str, ServedTarget]
) -> list[ServedTarget]:
    """The champions of the stream's configured targets that exist (loaded once per version:
    ``cache`` maps the resolved version folder to its session)."""
    found = []
    for target in configured_targets(pair):
        folder = pair.stream.target_dir(settings.paths.models, target.key) / "champion"
        if not (folder / "model.onnx").exists():
            continue
        resolved = str(folder.resolve())
        if resolved not in cache:
            cache[resolved] = load_version(target, Path(resolved))
        found.append(cache[resolved])
    return found


def forecasts(
    pair: PairConfig,
    settings: Settings,
    served: list[ServedTarget],
    main_forecast: float,
    online: Callable[[list[str]], dict[str, Any]],
) -> TargetForecasts:
    """Each loaded target's answer and the next-candle return's intervals, on the newest
    candle: the stream's features from the online store (``online(columns)``) and the
    volatility features computed from the validated candles (no TA-Lib in the worker)."""
    from candlecast.features.volatility import har_windows, volatility_features

    horizons = tuple(sorted({s.target.horizon for s in served} | {1}))
    step = timeframe_ms(pair.timeframe)
    table = PartitionedTable(pair.stream.candle_dir(settings.paths.validated))
    last = table.last_key()
    configured = [t.key for t in configured_targets(pair)]
    missing = tuple(key for key in configured if key not in {s.target.key for s in served})
    if last is None:
        return TargetForecasts((), None, tuple(configured))
    reach = 2 * har_windows(pair.timeframe)[2] + 2 * pair.features.warmup_candles
    candles = table.read(last - (reach + max(horizons)) * step, last + 1)
    volatility = volatility_features(candles, pair.timeframe, horizons)
    wanted = sorted(
        {f for s in served for f in s.card.features if f not in volatility.columns}
        | {"candle_ts", "close"}
    )
    values = online(wanted)
    if volatility.empty or values.get("candle_ts") is None:
        return TargetForecasts((), None, tuple(configured))
    if int(values["candle_ts"]) != last or int(volatility["candle_ts"].iloc[-1]) != last:
        return TargetForecasts((), None, tuple(configured))  # features not materialized yet
    row = pd.concat([volatility.iloc[-1], pd.Series(values, dtype=object)])
    row = row[~row.index.duplicated(keep="last")]
    close = float(row["close"])
    # right after a gap the month-long windows are not full again: those targets wait
    ready = [s for s in served if np.isfinite(_floats(row, s.card.features)).all()]
    missing += tuple(s.target.key for s in served if s not in ready)
    models = settings.paths.models
    answers = tuple(
        _answer(pair, s, row, close, step, pair.stream.target_dir(models, s.target.key))
        for s in ready
    )
    main = _main_intervals(pair, settings, row, close, main_forecast)
    return TargetForecasts(answers, main, missing)


def _floats(row: pd.Series, names: list[str]) -> np.ndarray:
    return np.array([np.nan if row[n] is None else float(row[n]) for n in names], np.float64)


def load_version(target: Target, folder: Path) -> ServedTarget:
    """The target's exported version in ``folder`` (``v<version>``): its ONNX session, the
    file checked against its recorded sha256, and its card.

    Raises:
        TamperedModelError: the ONNX file differs from its recorded sha256.
        ValueError: card.json and the ONNX model's card disagree.
    """
    recorded = folder / SHA256_FILE
    session = verified_session(
        folder / "model.onnx",
        recorded.read_text().strip() if recorded.exists() else None,
        f"{target.key}/{folder.name}/model.onnx",
    )
    card = ModelCard.from_onnx(session)
    stored = ModelCard.model_validate_json((folder / ARTIFACT).read_text())
    if stored.version != card.version or stored.target_key != target.key:
        raise ValueError(f"{folder}: card.json and the ONNX model's card disagree")
    return ServedTarget(target, card, session, session.get_inputs()[0].name, str(folder))


def _answer(
    pair: PairConfig, served: ServedTarget, row: pd.Series, close: float, step: int, folder: Path
) -> dict[str, Any]:
    card, target = served.card, served.target
    x = _floats(row, card.features).astype(np.float32).reshape(1, -1)
    value = float(np.asarray(served.session.run(None, {served.input_name: x})[0]).reshape(-1)[0])
    closed_at = int(row["candle_ts"]) + step
    body: dict[str, Any] = {
        "target": target.name,
        "horizon": target.horizon,
        "key": target.key,
        "forecast_for": ms_to_iso(closed_at + target.horizon * step),
        "value": value,
        **target.answer(value, close, pair.timeframe),
        "model": {
            "name": card.registered_model,
            "version": card.version,
            "kind": card.kind,
            "baseline": card.kind in target.baselines,
        },
        "decision": card.decision,
    }
    if card.intervals is not None and np.isfinite(_floats(row, card.intervals.inputs)).all():
        body["intervals"] = _intervals(row, card.intervals, card.version, folder, value, close)
    if card.note:
        body["note"] = card.note
    return body


def _main_intervals(
    pair: PairConfig, settings: Settings, row: pd.Series, close: float, forecast: float
) -> dict[str, Any] | None:
    path = pair.stream.target_dir(settings.paths.models, MAIN) / INTERVALS
    try:
        calibration = IntervalCalibration.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if not np.isfinite(_floats(row, calibration.inputs)).all():
        return None
    return _intervals(row, calibration, None, path.parent, forecast, close)


def _intervals(
    row: pd.Series,
    calibration: IntervalCalibration,
    version: str | None,
    folder: Path,
    forecast: float,
    close: float,
) -> dict[str, Any]:
    """The row's bands: sigma of the calibration's horizon (its inputs among the row's
    features), the multipliers of the row's volatility bin and that bin's ACI state."""
    number = calibration.bin_of(_floats(row, calibration.inputs))
    state = STATES.read(aci.state_path(folder, number))
    levels = aci.levels_in_use(calibration.for_bin(number), version, state)
    return _bands(forecast, _sigma(row, calibration), levels, close, calibration.source)


def _sigma(row: pd.Series, calibration: IntervalCalibration) -> float:
    """The row's sigma of the calibration's horizon (its columns among the row's features)."""
    return float(calibration.sigma(_floats(row, calibration.columns).reshape(1, -1))[0])


def _bands(
    forecast: float,
    sigma: float,
    levels: dict[str, tuple[float, float | None]],
    close: float,
    source: str,
) -> dict[str, Any]:
    """Each level's band from its (multiplier, ACI alpha); alpha None: the card's nominal
    multiplier (no online state yet)."""
    out = {}
    for level, (multiplier, alpha) in sorted(levels.items()):
        low, high = forecast - multiplier * sigma, forecast + multiplier * sigma
        out[level] = {
            "return": [low, high],
            "price": [close * math.exp(low), close * math.exp(high)],
            "multiplier": multiplier,
            "aci_level": float(level) if alpha is None else 1 - alpha,
        }
    online = any(alpha is not None for _, alpha in levels.values())
    method = "adaptive conformal (ACI)" if online else "normalized conformal"
    return {"sigma": sigma, "method": f"{method}, sigma: {source}", "levels": out}
