"""The pipeline stages for one stream and one data interval, as plain typed functions.

Each stage takes the pair config and the interval and returns a small typed result (row
counts, paths, run ids, versions), never data: the Airflow tasks and the CLI call these and
pass only those references on (:func:`to_xcom`). Every stage is idempotent for its interval.
Heavy libraries are imported inside the stages, so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candlecast.config import PairConfig, load_pairs
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import ms_to_datetime

if TYPE_CHECKING:
    from candlecast.data.ingestion import IngestResult
    from candlecast.features.featurestore import Materialized
    from candlecast.modeling.onnx_export import ExportedModel
    from candlecast.modeling.promotion import Decision
    from candlecast.modeling.training import TrainResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Validated:
    suite: str
    rows: int
    repairs: dict[str, int]
    missing_share: float
    docs: str | None
    derived: dict[str, int]


@dataclass(frozen=True)
class FeatureRows:
    rows: int
    start: str
    end: str


@dataclass(frozen=True)
class Deployed:
    bento_model: str
    forecast: dict[str, Any]


@dataclass(frozen=True)
class Backfilled:
    ingest: IngestResult
    validate: Validated
    features: FeatureRows


@dataclass(frozen=True)
class PipelineRun:
    backfill: Backfilled
    materialize: Materialized
    train: TrainResult
    promote: Decision
    export: ExportedModel
    deploy: Deployed


def to_xcom(result: Any) -> dict[str, Any]:
    """A stage result as the JSON-able dict Airflow keeps in XCom."""
    if not is_dataclass(result) or isinstance(result, type):
        raise TypeError(f"not a stage result: {type(result).__name__}")
    return asdict(result)


def pair_config(
    symbol: str,
    exchange: str | None = None,
    timeframe: str | None = None,
    settings: Settings | None = None,
) -> PairConfig:
    """The configured stream (raises UnknownStreamError / AmbiguousStreamError)."""
    return load_pairs((settings or get_settings()).pairs).resolve(symbol, exchange, timeframe)


def ingest(pair: PairConfig, start: datetime, end: datetime) -> IngestResult:
    """Fetch the interval (and, into an empty store, the history training needs)."""
    from candlecast.data import ingestion

    return ingestion.ingest(pair, start, end, with_history=True)


def validate(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    refetched: list[tuple[int, int]] | list[list[int]] | None = None,
) -> Validated:
    """Validate ``[start, end)`` and any gap ranges ingestion refetched (open times in ms)."""
    from candlecast.data import ingestion

    report = ingestion.validate(pair, start, end)
    for gap_start, gap_end in refetched or []:
        ingestion.validate(pair, ms_to_datetime(gap_start), ms_to_datetime(gap_end))
    return Validated(
        suite=report.suite,
        rows=report.rows,
        repairs=report.repairs,
        missing_share=report.completeness.missing_share if report.completeness else 0.0,
        docs=str(report.docs) if report.docs else None,
        derived=ingestion.derive_timeframes(pair, start, end),
    )


def features(pair: PairConfig, start: datetime, end: datetime) -> FeatureRows:
    from candlecast.features import featurestore

    rows = featurestore.write_features(pair, start, end)
    return FeatureRows(rows, start.isoformat(), end.isoformat())


def materialize(pair: PairConfig, start: datetime, end: datetime) -> Materialized:
    from candlecast.features import featurestore

    featurestore.ensure_applied(configured_timeframes())
    return featurestore.materialize(pair, start, end)


def train(pair: PairConfig, end: datetime) -> TrainResult:
    from candlecast.modeling import training

    return training.train(pair, end)


def promote(pair: PairConfig, run_id: str, model_uri: str) -> Decision:
    from candlecast.modeling import promotion

    return promotion.promote(pair, run_id, model_uri)


def export(pair: PairConfig) -> ExportedModel:
    from candlecast.modeling import onnx_export

    return onnx_export.export_champion(pair)


def deploy(pair: PairConfig, exported: ExportedModel) -> Deployed:
    """Deploy the exported model and smoke-test it on the latest online features."""
    from candlecast.serving import deploy as bento_deploy
    from candlecast.serving.forecaster import Forecaster

    tag = bento_deploy.deploy(pair, exported)
    forecast = Forecaster().predict(pair.symbol, pair.exchange, pair.timeframe)
    return Deployed(tag, forecast)


def backfill(pair: PairConfig, start: datetime, end: datetime) -> Backfilled:
    """Ingest, validate and compute features for a stretch (no training). Validation and
    features cover whatever ingestion fetched too: a catch-up from before ``start``, or on a
    fresh store the history the features and the training window need."""
    fetched = ingest(pair, start, end)
    first = min(start, ms_to_datetime(fetched.start_ms))
    return Backfilled(
        fetched, validate(pair, first, end, fetched.refetched), features(pair, first, end)
    )


def run_all(pair: PairConfig, start: datetime, end: datetime) -> PipelineRun:
    """All stages in order, without Airflow (``candlecast run``). On a fresh data directory
    the ingest fetches the warm-up and training history first."""
    filled = backfill(pair, start, end)
    online = materialize(pair, start, end)
    trained = train(pair, end)
    decision = promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
    exported = export(pair)
    return PipelineRun(filled, online, trained, decision, exported, deploy(pair, exported))


def publish(pair: PairConfig, out: Path) -> dict[str, str]:
    """Copy the stream's exported champion (ONNX + metadata) to ``out`` (the DVC-tracked
    ``models/<stream>/``)."""
    from mlflow import MlflowClient

    from candlecast.modeling import registry

    settings = get_settings()
    registry.configure(settings)
    champion = registry.require_champion(MlflowClient(), pair.stream)
    folder = pair.stream.model_dir(settings.paths.models, champion.version)
    if not (folder / "model.onnx").exists():
        raise FileNotFoundError(f"{pair.stream.label}: champion v{champion.version} not exported")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(folder / "model.onnx", out / "model.onnx")
    # The published copy names its model relative to itself: an absolute path differs per
    # clone, so `dvc status` would never be clean.
    metadata = json.loads((folder / "metadata.json").read_text()) | {"path": "model.onnx"}
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return {"version": str(champion.version), "out": str(out)}


def last_complete_day(pair: PairConfig) -> tuple[datetime, datetime]:
    """The newest complete UTC day the stream has data for (its ``end``, or today)."""
    end = (pair.end or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=1), end


def configured_timeframes() -> list[str]:
    """Every timeframe a configured stream uses (each gets a Feast view)."""
    config = load_pairs(get_settings().pairs)
    return sorted({tf for p in config.pairs for tf in [p.timeframe, *p.data.derived_timeframes]})
