"""Train a challenger for one pair on a point-in-time training set from Feast."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.models import infer_signature

from candlecast import featurestore, tracking
from candlecast.config import PairConfig
from candlecast.data import validated_table
from candlecast.errors import PermanentError
from candlecast.features import FEATURE_COLUMNS, next_return
from candlecast.modeling import chronological_split, fit_lightgbm, model_inputs, score
from candlecast.settings import REPO_ROOT, Settings, get_settings
from candlecast.timeframes import timeframe_ms, to_ms

log = logging.getLogger(__name__)


class NotEnoughHistory(PermanentError):
    """Too few validated rows to train on."""


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    metrics: dict[str, float]


def training_frame(pair: PairConfig, end: datetime, settings: Settings) -> pd.DataFrame:
    """Features joined point-in-time onto next-candle targets over the training window."""
    start = end - timedelta(days=pair.train_days)
    candles = validated_table(pair, settings).read(to_ms(start), to_ms(end))
    if candles.empty:
        raise NotEnoughHistory(f"{pair.symbol}: no validated candles before {end.isoformat()}")
    entity = next_return(candles, pair.timeframe)
    entity = entity[entity["event_timestamp"] <= end]
    entity.insert(0, "pair", pair.slug)
    frame = featurestore.historical_features(entity, pair.timeframe, settings)
    frame = frame.dropna(subset=[*FEATURE_COLUMNS, "target"])
    # Keep rows whose features belong to the candle that just closed: after a gap the point-in-
    # time join would otherwise hand an older row (within the view's TTL) to a newer target.
    epoch = pd.Timestamp(0, tz="UTC")
    closed_at = (frame["event_timestamp"] - epoch) // pd.Timedelta(milliseconds=1)
    frame = frame[frame["candle_ts"] + timeframe_ms(pair.timeframe) == closed_at]
    if len(frame) < pair.min_train_rows:
        raise NotEnoughHistory(
            f"{pair.symbol}: {len(frame)} training rows between {start:%Y-%m-%d} and "
            f"{end:%Y-%m-%d}, need {pair.min_train_rows}; backfill history first "
            f"(candlecast backfill --pair {pair.symbol} ...)"
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
    """Fit LightGBM on the window ending at ``end``, score it and persistence on the
    chronological holdout, and log everything to MLflow. Returns the run."""
    settings = settings or get_settings()
    frame = training_frame(pair, end, settings)
    start = end - timedelta(days=pair.train_days)
    table = validated_table(pair, settings)
    lineage = {
        "data.validated_store": str(table.root),
        "data.version": table.fingerprint(to_ms(start), to_ms(end)),
        "data.partitions": str(len(table.files(to_ms(start), to_ms(end)))),
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
    """Fit and score on a training frame (features, ``target``, ``event_timestamp``);
    ``lineage`` tags name the data version it came from."""
    settings = settings or get_settings()
    tracking.configure(settings)
    split = chronological_split(frame, pair.holdout_fraction)
    model = fit_lightgbm(split.train, FEATURE_COLUMNS, pair.lightgbm)
    x_holdout = pd.DataFrame(model_inputs(split.holdout, FEATURE_COLUMNS), columns=FEATURE_COLUMNS)
    y_holdout = split.holdout["target"].to_numpy()
    predicted = model.predict(x_holdout.to_numpy())
    metrics = {f"holdout_{k}": v for k, v in score(y_holdout, predicted).items()}
    baseline = score(y_holdout, np.zeros_like(y_holdout))
    metrics |= {f"persistence_{k}": v for k, v in baseline.items()}
    with mlflow.start_run(
        experiment_id=tracking.experiment_id(pair, settings),
        run_name=f"lightgbm-{end:%Y%m%dT%H%M}",
        tags={
            "pair": pair.symbol,
            "kind": "lightgbm",
            "interval_end": end.isoformat(),
            **(lineage or {}),
        },
    ) as run:
        mlflow.log_params(
            {
                **pair.lightgbm.model_dump(),
                "pair": pair.symbol,
                "timeframe": pair.timeframe,
                "train_rows": len(split.train),
                "holdout_rows": len(split.holdout),
                "train_start": split.train["event_timestamp"].iloc[0].isoformat(),
                "holdout_start": split.holdout["event_timestamp"].iloc[0].isoformat(),
                "holdout_end": split.holdout["event_timestamp"].iloc[-1].isoformat(),
                "feature_service": featurestore.service_name(pair.timeframe),
                "features": ",".join(FEATURE_COLUMNS),
            }
        )
        mlflow.log_metrics(metrics)
        info = mlflow.lightgbm.log_model(
            model,
            name="model",
            signature=infer_signature(x_holdout, predicted),
            input_example=x_holdout.head(3),
            pip_requirements=tracking.pip_requirements("lightgbm", "scikit-learn"),
        )
        _log_holdout(split.holdout)
    log.info("trained %s: %s", pair.symbol, json.dumps(metrics))
    return TrainResult(run.info.run_id, info.model_uri, metrics)


def _log_holdout(holdout: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(tracking.HOLDOUT_ARTIFACT).name
        holdout[["pair", "event_timestamp", *FEATURE_COLUMNS, "target"]].to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(tracking.HOLDOUT_ARTIFACT).parent))
