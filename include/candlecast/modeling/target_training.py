"""Train, gate, register and export every configured (target, horizon) of a stream other
than the next candle's return (whose champion the main pipeline trains and serves).

For each target at each horizon, on the training window ending at ``end``:

1. the rows are the stream's features and volatility features with the target's label, from
   the validated candles (:func:`~.target_evaluation.target_frame`, the function evaluation
   and serving use too);
2. the target's baselines and every configured kind that declares the target are fitted on
   the oldest rows and scored on the chronological holdout, with ``target.embargo`` rows
   dropped between the two so that no training label reaches into the holdout;
3. the gate (:func:`~.gate.decide_target`) keeps the best baseline unless a learned kind beats
   it significantly (one-sided Diebold-Mariano on the primary loss) and by the margin;
4. the champion is refitted on the whole window, exported to ONNX (its output in the
   target's units), checked for parity against the native forecast, and registered in the
   target's own registered model with its :class:`~.card.ModelCard` (:mod:`.target_export`);
   so is the best learned kind that lost the gate, if any, as the ``challenger`` the platform
   forecasts in the shadow (its own card says it lost and why; it never serves);
5. the decision is appended to the target's decision history (:func:`.history.
   target_history_path`), in force from ``end`` (data time), naming that challenger, so the
   platform forecasts each candle with the version that was champion then and with its
   challenger (:mod:`candlecast.monitoring.target_scoring`).

Return targets get interval calibration on the holdout: normalized conformal multipliers per
configured level, sigma the forecast of the horizon's volatility fitted on the
training rows (:mod:`candlecast.evaluation.interval_sigma`), per tercile bin of ex-ante
volatility (edges from the window's rows, multipliers from each bin's holdout scores); the card
records the sigma's coefficients, the edges and the bins' multipliers, so the service scales by
the very sigma and picks the very multipliers the holdout was calibrated with.

A re-run of the same window on the same data, settings and code reuses its run and version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.quality import usable_candles
from candlecast.errors import ConfigError, NotEnoughHistoryError, ParityError
from candlecast.evaluation import interval_sigma
from candlecast.evaluation import intervals as iv
from candlecast.features.engineering import compute_features
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling import registry, target_export
from candlecast.modeling.card import (
    IntervalCalibration,
    ModelCard,
    identity,
)
from candlecast.modeling.evaluate import aligned_inputs
from candlecast.modeling.gate import Policy, decide_target
from candlecast.modeling.kinds import get_kind, kind_names
from candlecast.modeling.promotion import compare_target
from candlecast.modeling.target_evaluation import LEVELS, REALIZED_VARIANCE, target_frame
from candlecast.modeling.target_export import TargetChampion
from candlecast.modeling.targeted import TargetModel
from candlecast.settings import Settings, get_settings
from candlecast.targets import MAIN, Target, configured_targets, get_target
from candlecast.timeframes import (
    timeframe_delta,
    timeframe_ms,
    to_ms,
    volatility_warmup_candles,
)

log = logging.getLogger(__name__)

#: The main target's interval calibration file, beside the other targets' folders.
INTERVALS = "intervals.json"
#: ONNX and native forecasts must agree this closely (relative, float32 inputs).
RELATIVE_TOLERANCE = 1e-4


def train_targets(
    pair: PairConfig, end: datetime, settings: Settings | None = None
) -> list[TargetChampion]:
    """Every configured target's champion for the window ending at ``end`` (see the module).

    A target whose window has too few rows with its features (a young stream) is returned
    ``skipped`` with the reason; the others train.

    Raises:
        NotEnoughHistoryError: no validated candles at all before ``end``.
        ParityError: a champion's ONNX export disagrees with its native forecasts.
    """
    settings = settings or get_settings()
    registry.configure(settings)
    candles = _candles(pair, end, settings)
    # the stream's features are the same for every target of the window: computed once
    ordered = candles.sort_values("ts", kind="stable").reset_index(drop=True)
    features = compute_features(ordered, pair.timeframe, pair.stream.market_key)
    found = []
    for target in configured_targets(pair):
        try:
            found.append(train_target(pair, target, end, candles, settings, features))
        except NotEnoughHistoryError as exc:
            # a young stream: this target trains once the history is long enough
            log.info("%s %s: not trained: %s", pair.stream.label, target.key, exc)
            found.append(TargetChampion(target.key, "", "", False, str(exc), "", skipped=True))
    calibrate_main_intervals(pair, end, candles, settings, features)
    return found


def calibrate_main_intervals(
    pair: PairConfig,
    end: datetime,
    candles: pd.DataFrame,
    settings: Settings,
    features: pd.DataFrame | None = None,
) -> Path | None:
    """Interval multipliers of the next candle's return (the main champion's target), from the
    normalized scores of "no change" on the window's holdout, written beside the targets'
    (``<models>/<stream>/targets/return_h1/intervals.json``). Every served return forecast is
    near 0 (persistence, or a model that shrinks towards it), so its residuals are persistence's
    to within noise."""
    target = get_target("return", 1)
    start = end - timedelta(days=pair.training.train_days)
    frame = target_frame(candles, pair.timeframe, pair.stream.market_key, target, features)
    frame = frame[frame["event_timestamp"] > pd.Timestamp(start)].reset_index(drop=True)
    positions = np.arange(len(frame))
    train, holdout = _split(len(frame), pair.training.holdout_fraction, target)
    if len(holdout) < 50 or len(train) < interval_sigma.MIN_ROWS:
        log.info("%s: too little history to calibrate intervals yet", pair.stream.label)
        return None
    y = frame["target"].to_numpy(np.float64)
    calibration = _calibration(
        target, pair.timeframe, frame, positions, (train, holdout), y, np.zeros(len(holdout))
    )
    folder = pair.stream.target_dir(settings.paths.models, MAIN)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INTERVALS
    staged = path.with_suffix(".tmp")
    staged.write_text(calibration.model_dump_json(indent=2) if calibration else "{}")
    staged.replace(path)
    return path


def train_target(
    pair: PairConfig,
    target: Target,
    end: datetime,
    candles: pd.DataFrame,
    settings: Settings,
    features: pd.DataFrame | None = None,
) -> TargetChampion:
    stream = pair.stream
    start = end - timedelta(days=pair.training.train_days)
    frame = target_frame(candles, pair.timeframe, stream.market_key, target, features)
    frame = frame[frame["event_timestamp"] > pd.Timestamp(start)].reset_index(drop=True)
    names = [*target.baselines, *_learned(pair, target)]
    data_version = _version(candles)
    signature = _signature(pair, target, end, names, data_version)
    reused = target_export.reuse(pair, target, signature, settings)
    if reused is not None:
        return reused
    models = {name: _maker(pair, target, name) for name in names}
    inputs, positions = aligned_inputs(frame, models, timeframe_ms(pair.timeframe))
    y = frame["target"].to_numpy(np.float64)[positions]
    train, holdout = _split(len(positions), pair.training.holdout_fraction, target)
    if len(train) < pair.training.min_train_rows // 2 or len(holdout) < 50:
        raise NotEnoughHistoryError(
            f"{stream.label}: {len(positions)} usable rows for {target.key} in the window "
            f"ending {end:%Y-%m-%d %H:%M} (the volatility features need "
            f"{volatility_warmup_candles(pair.timeframe)} candles of history before a row)"
        )
    fitted, predicted = {}, {}
    for name, make in models.items():
        model = make()
        model.fit(inputs[name][train], y[train])
        fitted[name], predicted[name] = model, model.predict(inputs[name][holdout])
    verdict = _decide(pair, target, y[holdout], predicted)
    fit = _Fit(frame, positions, (train, holdout), inputs, y, predicted, data_version, end)
    champion = _export(
        pair, target, models[verdict.champion], verdict.champion, fit, verdict.reason
    )
    challenger = _shadow(pair, target, models, verdict, fit)
    return target_export.register(
        pair, target, champion, challenger, (y[holdout], predicted), signature, settings
    )


@dataclass(frozen=True)
class _Fit:
    """One target's window as the gate saw it: rows, split, inputs and holdout forecasts."""

    frame: pd.DataFrame
    positions: np.ndarray
    split: tuple[np.ndarray, np.ndarray]
    inputs: dict[str, np.ndarray]
    y: np.ndarray
    predicted: dict[str, np.ndarray]
    data_version: str
    end: datetime


def _shadow(
    pair: PairConfig, target: Target, models: dict[str, Any], verdict: Any, fit: _Fit
) -> target_export.Exported | None:
    """The best losing learned kind exported for the shadow, or None: none lost, or its
    export failed parity (logged; the champion is served either way, as for the main
    target's shadow)."""
    holdout = fit.split[1]
    loser = _best_loser(target, verdict.champion, fit.y[holdout], fit.predicted)
    if loser is None:
        return None
    why = f"challenger in the shadow, not served: {loser} lost the gate ({verdict.reason})"
    try:
        return _export(pair, target, models[loser], loser, fit, why)
    except ParityError as exc:
        log.warning("%s %s: no shadow challenger: %s", pair.stream.label, target.key, exc)
        return None


def _best_loser(
    target: Target, champion: str, y: np.ndarray, predicted: dict[str, np.ndarray]
) -> str | None:
    """The learned kind with the best holdout score among those the gate did not serve (one
    per target keeps the cost of exporting and forecasting them bounded); None when none."""
    losers = [name for name in predicted if name not in target.baselines and name != champion]
    return min(losers, key=lambda name: target.primary_score(y, predicted[name]), default=None)


def _export(
    pair: PairConfig, target: Target, make: Any, kind: str, fit: _Fit, decision: str
) -> target_export.Exported:
    """``kind`` refitted on the whole window, its card and its parity-checked ONNX model.

    Raises:
        ParityError: the ONNX export disagrees with the native forecasts.
    """
    stream = pair.stream
    train, holdout = fit.split
    model = make()
    model.fit(fit.inputs[kind], fit.y)  # the served fit: the whole window
    times = fit.frame["event_timestamp"].iloc[fit.positions]
    y, predicted = fit.y[holdout], fit.predicted
    baseline = _best_baseline(target, y, predicted)
    card = ModelCard(
        **identity(stream, target, stream.target_model(target.key)),
        kind=kind,
        kind_params=model.kind.params.model_dump(mode="json"),
        features=list(model.spec.features),
        window=model.window,
        correction=model.correction,
        train_start=times.iloc[int(train[0])].isoformat(),
        train_end=times.iloc[int(train[-1])].isoformat(),
        holdout_start=times.iloc[int(holdout[0])].isoformat(),
        holdout_end=times.iloc[int(holdout[-1])].isoformat(),
        interval_end=fit.end.isoformat(),
        data_version=fit.data_version,
        scores=target.scores(y, predicted[kind]),
        baseline=baseline,
        baseline_scores=target.scores(y, predicted[baseline]),
        decision=decision,
        note=None if kind not in target.baselines else get_kind(kind, target.name).serving_note,
        intervals=_calibration(
            target, pair.timeframe, fit.frame, fit.positions, fit.split, fit.y, predicted[kind]
        ),
    )
    onnx_model = model.to_onnx()
    _check_parity(onnx_model, model, fit.inputs[kind][holdout], target)
    return target_export.Exported(card, onnx_model)


def _candles(pair: PairConfig, end: datetime, settings: Settings) -> pd.DataFrame:
    """The validated candles of the window and the warm-up its volatility features need."""
    warm = volatility_warmup_candles(pair.timeframe) + pair.features.warmup_candles
    start = end - timedelta(days=pair.training.train_days) - timeframe_delta(pair.timeframe) * warm
    candles = usable_candles(
        pair, validated_table(pair.stream, settings).read(to_ms(start), to_ms(end))
    )
    if candles.empty:
        raise NotEnoughHistoryError(f"{pair.stream.label}: no validated candles before {end}")
    return candles


def _learned(pair: PairConfig, target: Target) -> list[str]:
    """The configured kinds that can forecast the target (besides its baselines)."""
    able = set(kind_names(target.name)) - set(target.baselines)
    return [name for name in pair.training.kinds if name in able]


def _maker(pair: PairConfig, target: Target, name: str) -> Any:
    kind = get_kind(name, target.name)
    raw = {**target.kind_defaults.get(name, {}), **pair.training.params.get(name, {})}
    try:
        params = kind.parse_params(raw or None)
    except ValidationError as exc:
        raise ConfigError(f"training.params.{name} for {target.key}: {exc}") from exc

    def make() -> TargetModel:
        return TargetModel.create(kind, target, pair.timeframe, params)

    return make


def _split(rows: int, holdout_fraction: float, target: Target) -> tuple[np.ndarray, np.ndarray]:
    """Chronological train and holdout positions, ``target.embargo`` rows dropped between."""
    cut = round(rows * (1 - holdout_fraction))
    return np.arange(max(cut - target.embargo, 0)), np.arange(cut, rows)


def _best_baseline(target: Target, y: np.ndarray, predicted: dict[str, np.ndarray]) -> str:
    return min(target.baselines, key=lambda name: target.primary_score(y, predicted[name]))


def _decide(
    pair: PairConfig, target: Target, y: np.ndarray, predicted: dict[str, np.ndarray]
) -> Any:
    """The gate on the holdout: primary scores compared, significance from the one-sided
    Diebold-Mariano test on the per-row primary loss."""
    gate = pair.training.gate
    scores = {name: target.primary_score(y, forecast) for name, forecast in predicted.items()}
    baselines = {name: scores[name] for name in target.baselines}
    best = min(baselines, key=lambda name: baselines[name])
    challengers = {
        name: compare_target(target, y, forecast, predicted[best])
        for name, forecast in predicted.items()
        if name not in target.baselines
    }
    policy = Policy(alpha=gate.alpha, min_margin=gate.min_margin)
    return decide_target(baselines, challengers, policy)


def _calibration(
    target: Target,
    timeframe: str,
    frame: pd.DataFrame,
    positions: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    y: np.ndarray,
    predicted: np.ndarray,
) -> IntervalCalibration | None:
    """Return targets: the sigma fitted on the training rows, and the quantile at each level
    of the holdout's scores normalized by it. The card keeps that fit, not a refit on the
    whole window: the multipliers hold for the sigma they were measured with."""
    if target.name != "return":
        return None
    train, holdout = split
    columns = interval_sigma.sigma_columns(timeframe)
    values = frame[columns].to_numpy(np.float64)[positions]
    realized = frame[REALIZED_VARIANCE].to_numpy(np.float64)[positions]
    fit = interval_sigma.fit_sigma(values[train], realized[train], columns)
    scores = np.abs(y[holdout] - predicted) / fit.sigma(values[holdout])
    ex_ante = frame[iv.EX_ANTE_COLUMN].to_numpy(np.float64)[positions]
    # edges from every row of the window (all known at training time): a holdout in another
    # regime than the training rows would leave a bin nearly empty
    edges = iv.bin_edges(ex_ante[np.concatenate([train, holdout])])
    bins = iv.volatility_bins(ex_ante[holdout], edges)
    # a bin with too few holdout rows starts from the pooled quantiles (its ACI moves on)
    per_bin = [iv.bin_prior(scores, bins, k) for k in range(iv.BINS)]
    return IntervalCalibration(
        source=interval_sigma.SOURCE,
        columns=list(fit.columns),
        weights=list(fit.weights),
        intercept=fit.intercept,
        multipliers=_quantiles(scores),
        bin_column=iv.EX_ANTE_COLUMN,
        bin_edges=[float(edge) for edge in edges],
        bin_multipliers=[_quantiles(part) for part in per_bin],
    )


def _quantiles(scores: np.ndarray) -> dict[str, float]:
    return {f"{lv:g}": float(np.quantile(scores, lv, method="higher")) for lv in LEVELS}


def _check_parity(onnx_model: Any, model: TargetModel, x: np.ndarray, target: Target) -> None:
    """The ONNX model's forecasts equal the native ones on the holdout rows (float32 inputs,
    as served), within :data:`RELATIVE_TOLERANCE` of the largest forecast.

    Raises:
        ParityError: they differ, or ONNX forecasts a non-finite number.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_model.SerializeToString())
    rows = x.astype(np.float32)
    got = np.asarray(session.run(None, {session.get_inputs()[0].name: rows})[0], np.float64)
    want = model.predict(rows.astype(np.float64))
    worst = float(np.max(np.abs(got.reshape(-1) - want))) if len(want) else 0.0
    bound = RELATIVE_TOLERANCE * float(np.max(np.abs(want), initial=0.0)) + 1e-12
    if not np.isfinite(got).all() or worst > bound:
        raise ParityError(f"{target.key}: ONNX and native forecasts differ by {worst:.3g}")


def _version(candles: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(candles, index=False).to_numpy().tobytes()
    return hashlib.md5(hashed, usedforsecurity=False).hexdigest()


def _signature(
    pair: PairConfig, target: Target, end: datetime, kinds: list[str], data_version: str
) -> str:
    from candlecast.modeling.training import _git_tags

    payload = {
        "end": end.isoformat(),
        "target": target.key,
        "kinds": kinds,
        "data": data_version,
        "training": pair.training.model_dump(mode="json"),
        "code": _git_tags().get(keys.GIT_COMMIT, ""),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]
