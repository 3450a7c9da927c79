"""Train challengers for one stream on a point-in-time training set from Feast.

Every configured model kind is fitted on the same chronological split and logged to the
stream's MLflow experiment as its own run, with the persistence baseline's scores beside its
own; the best run (by the primary metric on the holdout) is the challenger.

Three steps, so that an orchestrator can run each kind as its own task: :func:`prepare` builds
the training set (saved as parquet under the data directory) and opens the parent run;
:func:`fit_one` fits one kind as a child run; :func:`select` names the challenger. Each step is
idempotent: the same interval on the same data, kinds and settings reuses the runs already
logged instead of growing the experiment and the registry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from candlecast.config import PairConfig
from candlecast.data.ingestion import stored_completeness, validated_table
from candlecast.data.quality import usable_candles
from candlecast.errors import NotEnoughHistoryError
from candlecast.evaluation.metrics import score
from candlecast.features import featurestore
from candlecast.features.engineering import (
    ENTITY,
    FEATURE_COLUMNS,
    MULTI_TIMEFRAME_COLUMNS,
    next_return,
)
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling import registry
from candlecast.modeling.card import ModelCard, identity
from candlecast.modeling.datasets import TrainingSet, kind_features
from candlecast.modeling.kinds import BASELINE, get_kind, kind_names, kind_params
from candlecast.modeling.kinds.base import ModelKind, input_names
from candlecast.names import Stream, feature_service_name, run_name
from candlecast.settings import REPO_ROOT, Settings, get_settings
from candlecast.targets import get_target
from candlecast.timeframes import timeframe_ms, to_ms

log = logging.getLogger(__name__)

#: A card's decision before the gate has seen it (export writes the gate's in its place).
UNGATED = "trained; not gated yet"


@dataclass(frozen=True)
class KindRun:
    """One fitted kind: its MLflow run, logged model and holdout metrics."""

    kind: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrainResult:
    """Every kind fitted for one interval, and which is the challenger."""

    runs: list[KindRun]
    metric: str
    #: The run with the lowest holdout score on the primary metric.
    challenger: KindRun
    lineage: dict[str, str] = field(default_factory=dict)
    parent_run_id: str = ""


def training_window(pair: PairConfig, end: datetime) -> tuple[datetime, datetime]:
    return end - timedelta(days=pair.training.train_days), end


def training_frame(pair: PairConfig, end: datetime, settings: Settings) -> pd.DataFrame:
    """Features joined point-in-time onto next-candle targets over the training window.

    Raises:
        NotEnoughHistoryError: the window is missing too many candles, or yields too few rows.
    """
    stream = pair.stream
    start, _ = training_window(pair, end)
    candles = validated_table(stream, settings).read(to_ms(start), to_ms(end))
    candles = usable_candles(pair, candles)
    if candles.empty:
        raise NotEnoughHistoryError(
            f"{stream.label}: no validated candles before {end.isoformat()}"
        )
    completeness = stored_completeness(stream, start, end, settings)
    if completeness.missing_share > pair.data.max_missing_share:
        raise NotEnoughHistoryError(
            f"{stream.label}: the training window {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}"
            f" is {completeness.describe()}, more than data.max_missing_share="
            f"{pair.data.max_missing_share:.0%}; backfill or import the missing history "
            "(candlecast gaps shows where)"
        )
    entity = next_return(candles, pair.timeframe)
    entity = entity[entity["event_timestamp"] <= end]
    entity.insert(0, ENTITY, stream.market_key)
    frame = featurestore.historical_features(entity, pair.timeframe, settings)
    frame = frame.dropna(subset=[*FEATURE_COLUMNS, "target"])
    # Keep rows whose features belong to the candle that just closed: after a gap the point-in-
    # time join would otherwise hand an older row (within the view's TTL) to a newer target.
    epoch = pd.Timestamp(0, tz="UTC")
    closed_at = (frame["event_timestamp"] - epoch) // pd.Timedelta(milliseconds=1)
    frame = frame[frame["candle_ts"] + timeframe_ms(pair.timeframe) == closed_at]
    if len(frame) < pair.training.min_train_rows:
        raise NotEnoughHistoryError(
            f"{stream.label}: {len(frame)} training rows between {start:%Y-%m-%d} and "
            f"{end:%Y-%m-%d} ({completeness.describe()}), need "
            f"training.min_train_rows={pair.training.min_train_rows}; backfill history first "
            f"(candlecast backfill --pair {stream.symbol} --exchange {stream.exchange} "
            f"--timeframe {stream.timeframe} ...)"
        )
    return frame.sort_values("event_timestamp").reset_index(drop=True)


def dvc_version(path: Path) -> dict[str, str]:
    """The DVC version of a store directory when it is a stage output of this repo's
    ``dvc.lock`` (runs with ``CANDLECAST_HOME=.candlecast``, as ``dvc repro`` does)."""
    lock = REPO_ROOT / "dvc.lock"
    if not lock.exists() or not path.resolve().is_relative_to(REPO_ROOT):
        return {}
    relative = path.resolve().relative_to(REPO_ROOT).as_posix()
    for stage, spec in (yaml.safe_load(lock.read_text()).get("stages") or {}).items():
        for out in spec.get("outs", []):
            if out.get("path") == relative:
                return {keys.DATA_DVC_STAGE: stage, keys.DATA_DVC_MD5: out.get("md5", "")}
    return {}


@dataclass(frozen=True)
class Prepared:
    """A training set saved for the kinds to read, and the parent run that records it."""

    parent_run_id: str
    path: str  # parquet of the training frame
    end: str  # ISO end of the training window
    kinds: list[str]  # trainable kinds to fit, in config order
    rows: int
    baselines: dict[str, float]
    lineage: dict[str, str]
    reused: bool = False
    #: A dry run's training (nothing is promoted): its runs are named so.
    dry_run: bool = False


def train(pair: PairConfig, end: datetime, settings: Settings | None = None) -> TrainResult:
    """Fit every configured kind on the window ending at ``end``, score each and persistence
    on the chronological holdout, and log everything to MLflow."""
    settings = settings or get_settings()
    prepared = prepare(pair, end, settings)
    runs = [fit_one(pair, prepared, kind, settings) for kind in prepared.kinds]
    return select(prepared, runs, settings)


def data_lineage(pair: PairConfig, end: datetime, settings: Settings) -> dict[str, str]:
    """Tags naming the exact validated data of the window ending at ``end``."""
    start, _ = training_window(pair, end)
    table = validated_table(pair.stream, settings)
    completeness = stored_completeness(pair.stream, start, end, settings)
    return {
        keys.DATA_VALIDATED_STORE: str(table.root),
        keys.DATA_VERSION: table.fingerprint(to_ms(start), to_ms(end)),
        keys.DATA_PARTITIONS: str(len(table.files(to_ms(start), to_ms(end)))),
        keys.DATA_MISSING_SHARE: f"{completeness.missing_share:.6f}",
        **dvc_version(table.root),
    }


def prepare(
    pair: PairConfig,
    end: datetime,
    settings: Settings | None = None,
    frame: pd.DataFrame | None = None,
    lineage: dict[str, str] | None = None,
    reason: str = "",
    dry_run: bool = False,
) -> Prepared:
    """Build the training set of the window ending at ``end`` (or take ``frame``), save it,
    and log the parent run with the split, the baselines' scores and the dataset.

    Reuses the parent run of an earlier identical training (same end, data version, kinds
    and settings) instead of logging a new one. ``reason`` (what asked for this training: a
    schedule, new features, a drift-triggered retrain request) is tagged ``trigger.reason``.
    A ``dry_run`` training (the train DAG's ``dry_run`` param) names its runs "(dry run)".

    Raises:
        NotEnoughHistoryError: too little data, or no trainable kind configured.
    """
    settings = settings or get_settings()
    registry.configure(settings)
    kinds = trainable_kinds(pair)
    if frame is None:
        frame = training_frame(pair, end, settings)
        lineage = data_lineage(pair, end, settings)
    lineage = lineage or {keys.DATA_VERSION: _frame_version(frame)}
    signature = _signature(pair, kinds, end, lineage, dry_run)
    stream = pair.stream
    path = settings.paths.training_sets / stream.key / f"{signature}.parquet"
    reused = _finished_parent(stream, signature, settings)
    if reused is not None and path.exists():
        # a request on an unchanged window (a retrain asked by monitoring, a second features
        # event) is recorded on the run it reuses, with what it changed: nothing
        log.info(
            "%s: reusing training run %s (same window, data and settings; nothing retrained)%s",
            stream.label,
            reused.info.run_id,
            f" for: {reason}" if reason else "",
        )
        if reason:
            registry.client().set_tag(
                reused.info.run_id,
                keys.TRIGGER_REASON_REUSED,
                f"{reason[:4000]} (window and data unchanged: nothing retrained)",
            )
        return Prepared(
            reused.info.run_id,
            str(path),
            end.isoformat(),
            kinds,
            int(reused.data.params.get(keys.TRAIN_ROWS, 0))
            + int(reused.data.params.get(keys.HOLDOUT_ROWS, 0)),
            {k: v for k, v in reused.data.metrics.items()},
            lineage,
            reused=True,
            dry_run=dry_run,
        )
    data = _training_set(pair, frame, kinds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    data.frame.to_parquet(tmp)
    tmp.replace(path)
    baselines = _baseline_metrics(data)
    tags = _run_tags(pair, end, lineage) | {keys.TRAINING_SIGNATURE: signature}
    if reason:
        tags[keys.TRIGGER_REASON] = reason[:5000]
    with registry.start_run(
        experiment_id=registry.experiment_id(stream, settings),
        run_name=run_name("train", end, dry_run),
        tags={**tags, keys.RUN_ROLE: "training", keys.TRAINING_KINDS: ",".join(kinds)},
    ) as parent:
        registry.log_params(_split_params(pair, data))
        registry.log_metrics(baselines)
        _log_dataset(data)
    return Prepared(
        parent.info.run_id,
        str(path),
        end.isoformat(),
        kinds,
        len(data.frame),
        baselines,
        lineage,
        dry_run=dry_run,
    )


def fit_one(
    pair: PairConfig, prepared: Prepared, kind: str, settings: Settings | None = None
) -> KindRun:
    """Fit one kind on the prepared training set as a child run of the training run (or
    return the finished child an earlier attempt logged)."""
    settings = settings or get_settings()
    registry.configure(settings)
    if kind not in prepared.kinds:
        raise NotEnoughHistoryError(f"{kind!r} is not one of this training's kinds")
    done = _finished_child(pair.stream, prepared.parent_run_id, kind, settings)
    if done is not None:
        log.info("%s: reusing %s run %s", pair.stream.label, kind, done.info.run_id)
        return KindRun(kind, done.info.run_id, done.data.tags[keys.MODEL_URI], done.data.metrics)
    frame = pd.read_parquet(prepared.path)
    data = _training_set(pair, frame, prepared.kinds)
    model = _model(pair, kind)
    end = datetime.fromisoformat(prepared.end)
    tags = _run_tags(pair, end, prepared.lineage) | {keys.PARENT_RUN_ID: prepared.parent_run_id}
    experiment = registry.experiment_id(pair.stream, settings)
    name = run_name(kind, end, prepared.dry_run)
    card = _card(pair, model, data, prepared.lineage, end)
    return _fit_kind(model, data, name, prepared.baselines, tags, experiment, card)


def select(
    prepared: Prepared, runs: list[KindRun], settings: Settings | None = None
) -> TrainResult:
    """The challenger: the kind with the lowest holdout score on the primary metric (also
    recorded on the training run)."""
    settings = settings or get_settings()
    registry.configure(settings)
    metric = settings.primary_metric
    if not runs:
        raise NotEnoughHistoryError("no kind was fitted: nothing to select a challenger from")
    best = min(runs, key=lambda run: run.metrics[f"holdout_{metric}"])
    client = registry.client()
    client.set_tag(prepared.parent_run_id, keys.CHALLENGER_KIND, best.kind)
    client.set_tag(prepared.parent_run_id, keys.CHALLENGER_RUN_ID, best.run_id)
    # the training run spans its kinds' runs (it was closed when the training set was saved,
    # before any kind was fitted): it ends with the last of them
    ends = [client.get_run(run.run_id).info.end_time for run in runs]
    parent = client.get_run(prepared.parent_run_id).info
    last = max([end for end in ends if end], default=None)
    if last is not None and (parent.end_time or 0) < last:
        client.set_terminated(prepared.parent_run_id, status="FINISHED", end_time=last)
    return TrainResult(runs, metric, best, prepared.lineage, prepared.parent_run_id)


def fit_and_log(
    pair: PairConfig,
    frame: pd.DataFrame,
    end: datetime,
    settings: Settings | None = None,
    lineage: dict[str, str] | None = None,
) -> TrainResult:
    """Fit and score every configured trainable kind on a training frame (features,
    ``target``, ``event_timestamp``, ``candle_ts``); ``lineage`` tags name its data version.

    One parent MLflow run per training, one child run per kind. Each kind is fitted on the
    oldest rows and scored on the chronological holdout (the model logged as ``holdout_fit``),
    then refitted with the same settings on the whole window: that fit (``model``) is the one
    registered and served. Baselines (persistence, drift) are scored on the same rows.
    """
    settings = settings or get_settings()
    prepared = prepare(pair, end, settings, frame=frame, lineage=lineage)
    runs = [fit_one(pair, prepared, kind, settings) for kind in prepared.kinds]
    return select(prepared, runs, settings)


def trainable_kinds(pair: PairConfig) -> list[str]:
    """The pair's configured kinds that learn (baselines are scored, not trained).

    Raises:
        NotEnoughHistoryError: none of them is trainable.
    """
    kinds = [name for name in pair.training.kinds if get_kind(name).trainable]
    if not kinds:
        raise NotEnoughHistoryError(
            f"{pair.stream.label}: training.kinds {pair.training.kinds} has no trainable kind"
        )
    return kinds


def new_model(pair: PairConfig, name: str) -> ModelKind:
    """An unfitted model of kind ``name`` with the pair's settings, as training builds it
    (for in-memory fits such as ``candlecast replay``)."""
    return _model(pair, name)


def training_set(pair: PairConfig, frame: pd.DataFrame, kinds: list[str]) -> TrainingSet:
    """The chronological split training fits ``kinds`` on (see :func:`_training_set`).

    Raises:
        NotEnoughHistoryError: too few usable rows for both parts.
    """
    return _training_set(pair, frame, kinds)


def _model(pair: PairConfig, name: str) -> ModelKind:
    kind = get_kind(name)
    return kind(kind_features(kind), kind_params(pair.training, name))


def _training_set(pair: PairConfig, frame: pd.DataFrame, kinds: list[str]) -> TrainingSet:
    """Every kind is scored on the same rows: those with every column any kind reads."""
    models = [_model(pair, name) for name in kinds]
    columns = max((m.spec.features for m in models), key=len)
    return TrainingSet.build(
        frame.dropna(subset=list(columns)),
        columns,
        pair.training.holdout_fraction,
        max(model.window for model in models),
        timeframe_ms(pair.timeframe),
    )


def _run_tags(pair: PairConfig, end: datetime, lineage: dict[str, str]) -> dict[str, str]:
    return {
        **pair.stream.run_tags,
        keys.INTERVAL_END: end.isoformat(),
        keys.FEATURE_SERVICE: feature_service_name(pair.timeframe),
        **lineage,
        **_git_tags(),
    }


def _signature(
    pair: PairConfig, kinds: list[str], end: datetime, lineage: dict[str, str], dry_run: bool
) -> str:
    """What makes two trainings the same: window end, data version, kinds, their settings
    and the code version; and a dry run, whose runs are named so, is never the same training
    as a real one (neither reuses the other's runs under the wrong name)."""
    training = pair.training.model_dump(mode="json")
    payload = {
        "end": end.isoformat(),
        "data": lineage.get(keys.DATA_VERSION, ""),
        "kinds": kinds,
        "training": {k: training[k] for k in training if k != "kinds"},
        "code": _git_tags().get(keys.GIT_COMMIT, ""),
    } | ({"dry_run": True} if dry_run else {})
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return f"{end:%Y%m%dT%H%M}-{digest.hexdigest()[:16]}"


def _frame_version(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.md5(hashed, usedforsecurity=False).hexdigest()


def _finished_parent(stream: Stream, signature: str, settings: Settings) -> Any | None:
    runs = registry.client().search_runs(
        [registry.experiment_id(stream, settings)],
        filter_string=f"tags.`{keys.TRAINING_SIGNATURE}` = '{signature}' and "
        "attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs else None


def _finished_child(stream: Stream, parent: str, kind: str, settings: Settings) -> Any | None:
    runs = registry.client().search_runs(
        [registry.experiment_id(stream, settings)],
        filter_string=f"tags.`{keys.PARENT_RUN_ID}` = '{parent}' and "
        f"tags.{keys.KIND} = '{kind}' and "
        "attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs and keys.MODEL_URI in runs[0].data.tags else None


def _baseline_metrics(data: TrainingSet) -> dict[str, float]:
    """Every baseline kind fitted on the training rows and scored on the holdout."""
    metrics: dict[str, float] = {}
    for name in kind_names():
        kind = get_kind(name)
        if not kind.baseline:
            continue
        model = kind(FEATURE_COLUMNS)
        model.fit(data.inputs(1, data.train, model.spec.features), data.target(data.train))
        predicted = model.predict(data.inputs(1, data.holdout, model.spec.features))
        scores = score(data.target(data.holdout), predicted)
        if name == BASELINE:  # persistence forecasts no change: it calls no direction
            scores.pop("directional_accuracy")
        metrics |= _prefixed(scores, name)
    return metrics


def _ratios(scores: dict[str, float], baselines: dict[str, float]) -> dict[str, float]:
    """The holdout RMSE and MAE over persistence's on the same rows (below 1: skill): MLflow's
    compare page rounds raw returns' errors to three decimals, where every kind reads the
    same; the gate decides on differences of a few percent, which the ratios show."""
    found = {}
    for name in ("rmse", "mae"):
        base = baselines.get(f"{BASELINE}_{name}")
        if base:
            found[f"holdout_{name}_ratio"] = scores[name] / base
    return found


def _prefixed(scores: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in scores.items()}


def _split_params(pair: PairConfig, data: TrainingSet) -> dict[str, object]:
    times = data.frame["event_timestamp"]
    return {
        **pair.stream.run_tags,
        keys.TRAIN_ROWS: len(data.train),
        keys.HOLDOUT_ROWS: len(data.holdout),
        keys.TRAIN_START: times.iloc[int(data.train[0])].isoformat(),
        keys.HOLDOUT_START: times.iloc[int(data.holdout[0])].isoformat(),
        keys.HOLDOUT_END: times.iloc[int(data.holdout[-1])].isoformat(),
        keys.FEATURE_SERVICE: feature_service_name(pair.timeframe),
        keys.FEATURES: ",".join(FEATURE_COLUMNS),
    }


def _card(
    pair: PairConfig, model: ModelKind, data: TrainingSet, lineage: dict[str, str], end: datetime
) -> ModelCard:
    """The kind's model card before its fit: identity, features and windows (the training
    window ends at ``end``, the run's ``interval_end`` tag too; its scores,
    training time and run are filled in by :func:`_fit_kind`; its version, the gate's decision
    and the interval at export, :mod:`.onnx_export`)."""
    stream, target = pair.stream, get_target("return", 1)
    times = data.frame["event_timestamp"]
    return ModelCard(
        **identity(stream, target, stream.registered_model),
        kind=model.name,
        kind_params=model.params.model_dump(mode="json"),
        features=list(model.spec.features),
        window=model.window,
        train_start=times.iloc[int(data.train[0])].isoformat(),
        train_end=times.iloc[int(data.train[-1])].isoformat(),
        holdout_start=times.iloc[int(data.holdout[0])].isoformat(),
        holdout_end=times.iloc[int(data.holdout[-1])].isoformat(),
        interval_end=end.isoformat(),
        data_version=lineage.get(keys.DATA_VERSION, ""),
        scores={},
        baseline=BASELINE,
        baseline_scores={},
        decision=UNGATED,
        note=model.serving_note,
    )


def scored_card(
    card: ModelCard, scores: dict[str, float], baselines: dict[str, float], run_id: str
) -> ModelCard:
    """``card`` with its holdout ``scores`` (and their ratios to the baseline's), the
    baseline's scores (``<baseline>_<score>`` in ``baselines``) and its run."""
    prefix = f"{card.baseline}_"
    base = {k[len(prefix) :]: v for k, v in baselines.items() if k.startswith(prefix)}
    ratios = {
        f"{name}_ratio": scores[name] / base[name]
        for name in ("rmse", "mae")
        if base.get(name) and name in scores
    }
    return card.model_copy(
        update={
            "scores": scores | ratios,
            "baseline_scores": base,
            "run_id": run_id,
            "trained_at": datetime.now(UTC).isoformat(),
        }
    )


def _fit_kind(
    model: ModelKind,
    data: TrainingSet,
    run_label: str,
    baselines: dict[str, float],
    tags: dict[str, str],
    experiment_id: str,
    card: ModelCard,
) -> KindRun:
    name = model.name
    last_event = data.frame["event_timestamp"].iloc[int(data.usable[-1])].isoformat()
    with registry.start_run(
        experiment_id=experiment_id,  # else the default experiment, whose artifacts go to ./mlruns
        run_name=run_label,
        tags={**tags, keys.KIND: name, keys.RUN_ROLE: keys.KIND, keys.DATA_LAST_EVENT: last_event},
    ) as run:
        features = model.spec.features
        holdout_x = data.inputs(model.window, data.holdout, features)
        model.fit(data.inputs(model.window, data.train, features), data.target(data.train))
        predicted = model.predict(holdout_x)
        scores = score(data.target(data.holdout), predicted)
        metrics = _prefixed(scores, "holdout") | baselines | _ratios(scores, baselines)
        example = pd.DataFrame(holdout_x, columns=input_names(features, model.window))
        model.log_model(example, name="holdout_fit")
        model.fit(data.inputs(model.window, data.usable, features), data.target(data.usable))
        model_uri = model.log_model(example, name="model")
        registry.log_params(
            {
                **{f"{name}.{k}": v for k, v in model.params.model_dump().items()},
                keys.KIND: name,
                keys.WINDOW: model.window,
                keys.FEATURES: ",".join(features),
                keys.SERVED_FIT: "whole window (train + holdout)",
            }
        )
        registry.log_metrics(metrics)
        _log_holdout(data, predicted)
        _log_importance(model)
        card = scored_card(card, scores, baselines, run.info.run_id)
        registry.log_text(card.model_dump_json(indent=2), keys.CARD_ARTIFACT)
        registry.set_tag(keys.MODEL_URI, model_uri)  # marks the run complete, for reuse
    log.info("trained %s: %s", name, json.dumps(metrics))
    return KindRun(name, run.info.run_id, model_uri, metrics)


def _log_holdout(data: TrainingSet, predicted: np.ndarray) -> None:
    """The holdout (with the rows before it) and the holdout fit's forecasts on it."""
    inputs = [c for c in MULTI_TIMEFRAME_COLUMNS if c in data.frame]
    columns = [ENTITY, "event_timestamp", "candle_ts", *inputs, "target"]
    artifact = data.holdout_artifact(columns)
    artifact["predicted"] = np.nan
    artifact.loc[artifact["holdout"], "predicted"] = predicted
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(registry.HOLDOUT_ARTIFACT).name
        artifact.to_parquet(path)
        registry.log_artifact(str(path), artifact_path=str(Path(registry.HOLDOUT_ARTIFACT).parent))
    plot_holdout(artifact[artifact["holdout"]])


def plot_holdout(rows: pd.DataFrame) -> None:
    """The holdout fit's forecasts against the realized returns, over time (``plots/``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 3.5))
    times = pd.to_datetime(rows["event_timestamp"])
    axes.plot(times, rows["target"], linewidth=0.6, color="0.6", label="realized return")
    axes.plot(times, rows["predicted"], linewidth=1.0, color="C0", label="forecast")
    axes.axhline(0.0, linewidth=0.6, color="C3", linestyle="--", label="persistence (0)")
    axes.set_title("holdout: next-candle log return, forecast vs realized")
    axes.legend(loc="upper right", fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    registry.log_figure(figure, keys.HOLDOUT_PLOT_ARTIFACT)
    plt.close(figure)


def _log_importance(model: ModelKind) -> None:
    """The fitted model's feature importance, as JSON and a bar chart, where it has one."""
    importance = model.feature_importance()
    if not importance:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = sorted(importance.items(), key=lambda item: item[1])
    figure, axes = plt.subplots(figsize=(6, 0.3 * len(ranked) + 1))
    axes.barh([name for name, _ in ranked], [value for _, value in ranked])
    axes.set_title(f"{model.name}: feature importance")
    figure.tight_layout()
    registry.log_figure(figure, keys.IMPORTANCE_PLOT_ARTIFACT)
    plt.close(figure)
    registry.log_dict(importance, keys.FEATURE_IMPORTANCE_ARTIFACT)


def _log_dataset(data: TrainingSet) -> None:
    """The training rows as an MLflow dataset input of the parent run."""
    rows = data.frame.iloc[data.usable][["event_timestamp", *FEATURE_COLUMNS, "target"]]
    dataset = registry.dataset_from_pandas(rows, name="training_window", targets="target")
    registry.log_input(dataset, context="training")


@functools.cache
def _git_tags() -> dict[str, str]:
    """The code version (git commit) when running from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {keys.GIT_COMMIT: out.stdout.strip()} if out.returncode == 0 else {}
