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
   target's own registered model with its :class:`~.card.ModelCard` in the ONNX metadata and
   as the run's ``card.json``; only then does ``champion`` move, and the served copy under
   ``<models>/<stream>/targets/<target key>/champion`` is replaced in one rename;
5. the decision is appended to the target's decision history (:func:`.history.
   target_history_path`), in force from ``end`` (data time), so the platform forecasts each
   candle with the version that was champion then (:mod:`candlecast.monitoring.
   target_scoring`). Only the champion is exported, so no losing challenger is recorded for
   the shadow.

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
import tempfile
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
from candlecast.evaluation import interval_sigma, significance
from candlecast.evaluation import intervals as iv
from candlecast.features.engineering import compute_features
from candlecast.modeling import history, registry
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.card import (
    ARTIFACT,
    SHA256_FILE,
    IntervalCalibration,
    ModelCard,
    identity,
)
from candlecast.modeling.evaluate import aligned_inputs
from candlecast.modeling.gate import Comparison, Policy, decide_target
from candlecast.modeling.kinds import get_kind, kind_names
from candlecast.modeling.target_evaluation import LEVELS, REALIZED_VARIANCE, target_frame
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


@dataclass(frozen=True)
class TargetChampion:
    """The outcome for one (target, horizon): who serves it and where."""

    target_key: str
    kind: str
    version: str
    learned: bool
    reason: str
    path: str
    reused: bool = False
    #: Not trained this time: too little history for its features (``reason`` says how much).
    skipped: bool = False


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
    reused = _reuse(pair, target, signature, settings)
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
    champion = models[verdict.champion]()
    champion.fit(inputs[verdict.champion], y)  # the served fit: the whole window
    times = frame["event_timestamp"].iloc[positions]
    card = ModelCard(
        **identity(stream, target, stream.target_model(target.key)),
        kind=verdict.champion,
        kind_params=champion.kind.params.model_dump(mode="json"),
        features=list(champion.spec.features),
        window=champion.window,
        correction=champion.correction,
        train_start=times.iloc[int(train[0])].isoformat(),
        train_end=times.iloc[int(train[-1])].isoformat(),
        holdout_start=times.iloc[int(holdout[0])].isoformat(),
        holdout_end=times.iloc[int(holdout[-1])].isoformat(),
        interval_end=end.isoformat(),
        data_version=data_version,
        scores=target.scores(y[holdout], predicted[verdict.champion]),
        baseline=_best_baseline(target, y[holdout], predicted),
        baseline_scores=target.scores(
            y[holdout], predicted[_best_baseline(target, y[holdout], predicted)]
        ),
        decision=verdict.reason,
        note=None if verdict.learned else get_kind(verdict.champion, target.name).serving_note,
        intervals=_calibration(
            target,
            pair.timeframe,
            frame,
            positions,
            (train, holdout),
            y,
            predicted[verdict.champion],
        ),
    )
    onnx_model = champion.to_onnx()
    _check_parity(onnx_model, champion, inputs[verdict.champion][holdout], target)
    return _register(pair, target, card, onnx_model, predicted, y[holdout], signature, settings)


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
    reference = target.loss(y, predicted[best])
    challengers = {}
    for name in predicted:
        if name in target.baselines:
            continue
        test = significance.diebold_mariano_losses(
            target.loss(y, predicted[name]),
            reference,
            horizon=min(target.horizon, len(y) - 1),
            name=target.primary,
        )
        challengers[name] = Comparison(
            target.primary, scores[name], baselines[best], test.p_value, len(y)
        )
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


def _reuse(
    pair: PairConfig, target: Target, signature: str, settings: Settings
) -> TargetChampion | None:
    client = registry.client()
    runs = client.search_runs(
        [registry.experiment_id(pair.stream, settings)],
        filter_string=f"tags.`{keys.TARGETS_SIGNATURE}` = '{signature}' and "
        f"tags.`{keys.TARGET_VERSION}` != ''",
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    card = ModelCard.model_validate_json(
        Path(client.download_artifacts(run.info.run_id, ARTIFACT, tempfile.mkdtemp())).read_text()
    )
    folder = pair.stream.target_dir(settings.paths.models, target.key) / "champion"
    record_decision(pair, target, card, settings)  # a history begun after this version
    return TargetChampion(
        target.key, card.kind, str(card.version), card.kind not in target.baselines,
        card.decision, str(folder), reused=True,
    )  # fmt: skip


def record_decision(pair: PairConfig, target: Target, card: ModelCard, settings: Settings) -> None:
    """Append the gate's decision for ``card`` (its version serves from the end of its
    training window on) to the target's history, unless that decision is there already (a
    re-run of the same window)."""
    path = history.target_history_path(pair.stream, target.key, settings)
    since = datetime.fromisoformat(card.interval_end or card.holdout_end)
    decided = history.read(pair.stream, settings, path)
    if any(d.version == card.version and d.since == since for d in decided):
        return
    changed = not decided or decided[-1].version != card.version
    start = datetime.fromisoformat(card.train_start)
    history.record_now(
        pair.stream, since, str(card.version), card.kind, (start, since), "gate", changed,
        settings, path=path,
    )  # fmt: skip


def _register(
    pair: PairConfig,
    target: Target,
    card: ModelCard,
    onnx_model: Any,
    predicted: dict[str, np.ndarray],
    y: np.ndarray,
    signature: str,
    settings: Settings,
) -> TargetChampion:
    """Log the run (every kind's holdout scores, the card, the ONNX model), register the
    version, write the served copy, then move ``champion``."""
    stream = pair.stream
    name = stream.target_model(target.key)
    with registry.start_run(
        experiment_id=registry.experiment_id(stream, settings),
        run_name=f"{target.key}-{card.holdout_end[:16].replace(':', '')}",
        tags={
            **stream.run_tags,
            keys.RUN_ROLE: "target",
            keys.TARGET: target.name,
            keys.HORIZON: str(target.horizon),
            keys.TARGET_KEY: target.key,
            keys.TARGETS_SIGNATURE: signature,
            keys.KIND: card.kind,
            keys.GATE_DECISION: card.decision[:5000],
        },
    ) as run:
        for kind, forecast in predicted.items():
            scores = target.scores(y, forecast)
            registry.log_metrics({f"{kind}.{k}": v for k, v in scores.items()})
            reference = target.loss(y, predicted[card.baseline]).mean()
            registry.log_metric(
                f"{kind}.{target.primary}_ratio", float(target.loss(y, forecast).mean() / reference)
            )
        info = registry.log_onnx_model(card.embed(onnx_model), name=keys.MODEL_NAME)
        version = registry.register_model(info.model_uri, name, tags={keys.KIND: card.kind})
        final = card.with_version(str(version.version), run.info.run_id)
        registry.log_text(final.model_dump_json(indent=2), ARTIFACT)
        path = _serve_copy(stream.target_dir(settings.paths.models, target.key), final, onnx_model)
        client = registry.client()
        client.set_model_version_tag(
            name, version.version, keys.CHAMPION_REASON, card.decision[:5000]
        )
        client.update_model_version(name, version.version, description=card.decision[:5000])
        client.set_registered_model_alias(name, registry.CHAMPION, version.version)
        registry.set_tag(keys.TARGET_VERSION, str(version.version))  # marks the run complete
    record_decision(pair, target, final, settings)
    log.info(
        "%s %s: %s v%s (%s)", stream.label, target.key, card.kind, version.version, card.decision
    )
    return TargetChampion(
        target.key, card.kind, str(version.version), card.kind not in target.baselines,
        card.decision, str(path),
    )  # fmt: skip


def _serve_copy(folder: Path, card: ModelCard, onnx_model: Any) -> Path:
    """``<folder>/v<version>`` with model.onnx and card.json, and ``<folder>/champion`` a link
    to it, switched in one rename (a reader sees the old or the new version, never half)."""
    version_dir = folder / f"v{card.version}"
    version_dir.mkdir(parents=True, exist_ok=True)
    payload = card.embed(onnx_model).SerializeToString()
    (version_dir / "model.onnx").write_bytes(payload)
    # the card is inside the ONNX file, so its hash is recorded beside it (checked on load)
    (version_dir / SHA256_FILE).write_text(hashlib.sha256(payload).hexdigest() + "\n")
    (version_dir / ARTIFACT).write_text(card.model_dump_json(indent=2))
    link = folder / ".champion.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version_dir.name)
    link.replace(folder / "champion")
    return folder / "champion"
