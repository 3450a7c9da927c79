"""Train challengers for one stream on a point-in-time training set from Feast.

Every configured model kind is fitted on the same chronological split and logged to the
stream's MLflow experiment as its own run, with the persistence baseline's scores beside its
own; the best run (by the primary metric on the holdout) is the challenger.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import yaml

from candlecast.config import PairConfig
from candlecast.data.ingestion import stored_completeness, validated_table
from candlecast.errors import NotEnoughHistoryError
from candlecast.evaluation.metrics import score
from candlecast.evaluation.splits import Split, chronological_split
from candlecast.features import featurestore
from candlecast.features.engineering import ENTITY, FEATURE_COLUMNS, next_return
from candlecast.modeling import registry
from candlecast.modeling.kinds import BASELINE, get_kind, kind_params
from candlecast.modeling.kinds.base import ModelKind, model_inputs
from candlecast.names import feature_service_name
from candlecast.settings import REPO_ROOT, Settings, get_settings
from candlecast.timeframes import timeframe_ms, to_ms

log = logging.getLogger(__name__)


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
                return {"data.dvc_stage": stage, "data.dvc_md5": out.get("md5", "")}
    return {}


def train(pair: PairConfig, end: datetime, settings: Settings | None = None) -> TrainResult:
    """Fit every configured kind on the window ending at ``end``, score each and persistence
    on the chronological holdout, and log everything to MLflow."""
    settings = settings or get_settings()
    frame = training_frame(pair, end, settings)
    start, _ = training_window(pair, end)
    table = validated_table(pair.stream, settings)
    completeness = stored_completeness(pair.stream, start, end, settings)
    lineage = {
        "data.validated_store": str(table.root),
        "data.version": table.fingerprint(to_ms(start), to_ms(end)),
        "data.partitions": str(len(table.files(to_ms(start), to_ms(end)))),
        "data.missing_share": f"{completeness.missing_share:.6f}",
        **dvc_version(table.root),
    }
    return fit_and_log(pair, frame, end, settings, lineage)


def fit_and_log(
    pair: PairConfig,
    frame: pd.DataFrame,
    end: datetime,
    settings: Settings | None = None,
    lineage: dict[str, str] | None = None,
) -> TrainResult:
    """Fit and score every configured trainable kind on a training frame (features,
    ``target``, ``event_timestamp``); ``lineage`` tags name the data version it came from."""
    settings = settings or get_settings()
    registry.configure(settings)
    split = chronological_split(frame, pair.training.holdout_fraction)
    baseline = _scores(split, get_kind(BASELINE)(FEATURE_COLUMNS), "persistence")
    runs = [
        _fit_kind(pair, name, split, end, settings, baseline, lineage or {})
        for name in pair.training.kinds
        if get_kind(name).trainable
    ]
    if not runs:
        raise NotEnoughHistoryError(
            f"{pair.stream.label}: training.kinds {pair.training.kinds} has no trainable kind"
        )
    metric = settings.primary_metric
    best = min(runs, key=lambda run: run.metrics[f"holdout_{metric}"])
    return TrainResult(runs, metric, best, lineage or {})


def _scores(split: Split, model: ModelKind, prefix: str) -> dict[str, float]:
    predicted = model.predict(model_inputs(split.holdout, FEATURE_COLUMNS))
    scores = score(split.holdout["target"].to_numpy(), predicted)
    return {f"{prefix}_{k}": v for k, v in scores.items()}


def _fit_kind(
    pair: PairConfig,
    name: str,
    split: Split,
    end: datetime,
    settings: Settings,
    baseline: dict[str, float],
    lineage: dict[str, str],
) -> KindRun:
    kind = get_kind(name)
    params = kind_params(pair.training, name)
    model = kind(FEATURE_COLUMNS, params)
    model.fit(model_inputs(split.train, FEATURE_COLUMNS), split.train["target"].to_numpy())
    metrics = _scores(split, model, "holdout") | baseline
    x_holdout = pd.DataFrame(model_inputs(split.holdout, FEATURE_COLUMNS), columns=FEATURE_COLUMNS)
    stream = pair.stream
    with mlflow.start_run(
        experiment_id=registry.experiment_id(stream, settings),
        run_name=f"{name}-{end:%Y%m%dT%H%M}",
        tags={**stream.run_tags, "kind": name, "interval_end": end.isoformat(), **lineage},
    ) as run:
        mlflow.log_params(
            {
                **{f"{name}.{k}": v for k, v in params.model_dump().items()},
                **stream.run_tags,
                "kind": name,
                "window": model.window,
                "train_rows": len(split.train),
                "holdout_rows": len(split.holdout),
                "train_start": split.train["event_timestamp"].iloc[0].isoformat(),
                "holdout_start": split.holdout["event_timestamp"].iloc[0].isoformat(),
                "holdout_end": split.holdout["event_timestamp"].iloc[-1].isoformat(),
                "feature_service": feature_service_name(pair.timeframe),
                "features": ",".join(FEATURE_COLUMNS),
            }
        )
        mlflow.log_metrics(metrics)
        model_uri = model.log_model(x_holdout)
        _log_holdout(split.holdout)
    log.info("trained %s %s: %s", stream.label, name, json.dumps(metrics))
    return KindRun(name, run.info.run_id, model_uri, metrics)


def _log_holdout(holdout: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(registry.HOLDOUT_ARTIFACT).name
        holdout[[ENTITY, "event_timestamp", *FEATURE_COLUMNS, "target"]].to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(registry.HOLDOUT_ARTIFACT).parent))
