"""How each served target did on the candles that followed: realized primary score (QLIKE,
RMSE), its ratio to persistence on the same rows, realized 90% interval coverage, the newest
realized forecast beside its outcome, and the intervals' online ACI state, moved by the
outcomes realized since the last check (:mod:`candlecast.monitoring.aci`).

The forecasts are recomputed from the validated candles with the served champion (its ONNX
model and card) for the rows of the current window whose label was realized before ``as_of``:
a target forecast depends only on its features, so this equals what the service answered for
those candles while that champion was served (a champion newer than a row is judged on it too:
the figures describe the champion, not the history of answers). The next candle's return (the
main champion's target) has intervals but no card here: its ACI state is judged on "no change",
as its calibration is (:func:`main_aci`).
"""

from __future__ import annotations

import fcntl
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.quality import usable_candles
from candlecast.features.volatility import har_windows
from candlecast.modeling.card import IntervalCalibration
from candlecast.modeling.target_evaluation import target_frame
from candlecast.monitoring import aci
from candlecast.serving import aci as aci_state
from candlecast.serving import targets as served_targets
from candlecast.settings import Settings
from candlecast.targets import MAIN, Target, get_target
from candlecast.targets.volatility import VARIANCE_FLOOR
from candlecast.timeframes import timeframe_ms, to_ms


@dataclass(frozen=True)
class TargetRealized:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def realized_targets(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings
) -> list[TargetRealized]:
    """Each served target's realized figures over the rows closing in ``span``."""
    served = served_targets.load(pair, settings, {})
    if not served:
        return []
    candles = _candles(pair, span, settings)
    return [_realized(pair, s, candles, span, settings) for s in served] if len(candles) else []


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


def _candles(pair: PairConfig, span: tuple[datetime, datetime], settings: Settings) -> pd.DataFrame:
    step = timeframe_ms(pair.timeframe)
    reach = har_windows(pair.timeframe)[2] + 2 * pair.features.warmup_candles
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


def _multipliers(frame: pd.DataFrame, calibration: IntervalCalibration, level: str) -> Any:
    """Each row's card multiplier at ``level``: its volatility bin's, with bins."""
    if calibration.bin_column is None:
        return calibration.multipliers[level]
    from candlecast.evaluation.intervals import volatility_bins

    bins = volatility_bins(
        frame[calibration.bin_column].to_numpy(np.float64), calibration.bin_edges
    )
    per_bin = np.array([m[level] for m in calibration.bin_multipliers])
    return per_bin[np.minimum(bins, len(per_bin) - 1)]


def _rows_by_bin(
    pair: PairConfig, calibration: IntervalCalibration, candles: pd.DataFrame, rows: np.ndarray
) -> dict[int | None, np.ndarray]:
    """The candle rows each ACI state moves by: all of them without volatility bins, else
    each bin's (a row whose bin column is not known yet, after a gap, is in none)."""
    if calibration.bin_column is None:
        return {None: rows}
    from candlecast.evaluation.intervals import volatility_bins
    from candlecast.features.volatility import volatility_features

    features = volatility_features(candles, pair.timeframe)
    known = features[calibration.bin_column].notna().to_numpy()
    stamps = features["candle_ts"].to_numpy(np.int64)[known]
    bins = volatility_bins(
        features[calibration.bin_column].to_numpy(np.float64)[known], calibration.bin_edges
    )
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
    served: served_targets.ServedTarget,
    candles: pd.DataFrame,
    span: tuple[datetime, datetime],
    settings: Settings,
) -> TargetRealized:
    target, card = served.target, served.card
    frame = _window(pair, target, candles, span, card.features)
    if frame.empty:
        return TargetRealized(
            target.key, card.version, card.kind, 0, target.primary, None, None, None, None
        )
    x = frame[card.features].to_numpy(np.float32)
    predicted = np.asarray(served.session.run(None, {served.input_name: x})[0], np.float64)
    predicted = predicted.reshape(-1)
    y = frame["target"].to_numpy(np.float64)
    if target.name == "volatility":
        reference = np.maximum(frame[f"rv_{target.horizon}"].to_numpy(np.float64), VARIANCE_FLOOR)
    else:
        reference = np.zeros(len(y))
    score, persistence = target.primary_score(y, predicted), target.primary_score(y, reference)
    coverage, levels = None, []
    if card.intervals is not None and "0.9" in card.intervals.multipliers:
        half = _multipliers(frame, card.intervals, "0.9") * _sigmas(frame, card.intervals)
        coverage = float(np.mean(np.abs(y - predicted) <= half))
    if card.intervals is not None:
        folder = pair.stream.target_dir(settings.paths.models, target.key)
        levels = _advance(
            pair, folder, target, card.intervals, card.version, frame, predicted, candles, span
        )
    return TargetRealized(
        key=target.key,
        version=card.version,
        kind=card.kind,
        forecasts=len(y),
        metric=target.primary,
        score=score,
        persistence=persistence,
        ratio=score / persistence if persistence > 0 else None,
        coverage_90=coverage,
        newest_forecast=_in_units(target, float(predicted[-1]), pair.timeframe),
        newest_realized=_in_units(target, float(y[-1]), pair.timeframe),
        aci=tuple(levels),
    )


def _in_units(target: Target, value: float, timeframe: str) -> float:
    """A forecast or outcome as users read it: annualized volatility, or the log return."""
    answer = target.answer(value, 1.0, timeframe)
    return float(answer.get("annualized_volatility", value))
