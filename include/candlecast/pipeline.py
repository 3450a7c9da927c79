"""The pipeline stages for one pair and one data interval, as plain functions.

Each stage takes the pair and the interval and returns a small JSON-able dict (paths, run ids,
versions): the Airflow tasks and the CLI call these and pass only those references on.
Every stage is idempotent for its interval.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from candlecast.config import PairConfig, load_pairs
from candlecast.settings import Settings, get_settings

log = logging.getLogger(__name__)


def pair_config(symbol: str, settings: Settings | None = None) -> PairConfig:
    return load_pairs((settings or get_settings()).pairs).get(symbol)


def ingest(pair: PairConfig, start: datetime, end: datetime) -> dict[str, Any]:
    from candlecast import data

    result = data.ingest(pair, start, end)
    return {
        "rows": result.rows,
        "partitions": result.files,
        "start": _iso(result.start_ms),
        "end": _iso(result.end_ms),
        "refetched": [[_iso(a), _iso(b)] for a, b in result.refetched],
    }


def validate(
    pair: PairConfig, start: datetime, end: datetime, refetched: list[list[str]] | None = None
) -> dict[str, Any]:
    """Validate ``[start, end)`` and any gap ranges ingestion refetched."""
    from candlecast import data

    report = data.validate(pair, start, end)
    for gap_start, gap_end in refetched or []:
        data.validate(pair, datetime.fromisoformat(gap_start), datetime.fromisoformat(gap_end))
    return {
        "suite": report.suite,
        "rows": report.rows,
        "success": report.success,
        "repairs": report.repairs,
        "docs": str(report.docs) if report.docs else None,
        "derived": data.derive_timeframes(pair, start, end),
    }


def features(pair: PairConfig, start: datetime, end: datetime) -> dict[str, Any]:
    from candlecast import featurestore

    return {"rows": featurestore.write_features(pair, start, end)}


def materialize(pair: PairConfig, start: datetime, end: datetime) -> dict[str, Any]:
    from candlecast import featurestore

    applied = featurestore.ensure_applied(_timeframes())
    done = featurestore.materialize(pair, start, end)
    return {"feature_view": featurestore.view_name(pair.timeframe), "applied": applied, **done}


def train(pair: PairConfig, end: datetime) -> dict[str, Any]:
    from candlecast import training

    result = training.train(pair, end)
    return {"run_id": result.run_id, "model_uri": result.model_uri, "metrics": result.metrics}


def promote(pair: PairConfig, run_id: str, model_uri: str) -> dict[str, Any]:
    from candlecast import promotion

    return asdict(promotion.promote(pair, run_id, model_uri))


def export(pair: PairConfig) -> dict[str, Any]:
    from candlecast import export as onnx_export

    return asdict(onnx_export.export_champion(pair))


def deploy(pair: PairConfig, exported: dict[str, Any]) -> dict[str, Any]:
    """Deploy the exported model and smoke-test it on the latest online features."""
    from candlecast import deploy as bento_deploy
    from candlecast.export import ExportedModel
    from candlecast.predict import Forecaster

    tag = bento_deploy.deploy(pair, ExportedModel(**exported))
    return {"bento_model": tag, "forecast": Forecaster().predict(pair.symbol)}


def run_all(pair: PairConfig, start: datetime, end: datetime) -> dict[str, Any]:
    """All stages in order, without Airflow (``candlecast run``)."""
    results = backfill(pair, start, end)
    results["materialize"] = materialize(pair, start, end)
    results["train"] = train(pair, end)
    results["promote"] = promote(pair, results["train"]["run_id"], results["train"]["model_uri"])
    results["export"] = export(pair)
    results["deploy"] = deploy(pair, results["export"])
    return results


def backfill(pair: PairConfig, start: datetime, end: datetime) -> dict[str, Any]:
    """Ingest, validate and compute features for a stretch (no training). Validation covers
    whatever ingestion fetched, including a catch-up from before ``start``."""
    fetched = ingest(pair, start, end)
    first = min(start, datetime.fromisoformat(fetched["start"]))
    return {
        "ingest": fetched,
        "validate": validate(pair, first, end, fetched["refetched"]),
        "features": features(pair, start, end),
    }


def publish(pair: PairConfig, out: Path) -> dict[str, Any]:
    """Copy the pair's exported champion (ONNX + metadata) to ``out`` (the DVC-tracked
    ``models/<pair>/``)."""
    from mlflow import MlflowClient

    from candlecast import tracking

    settings = get_settings()
    tracking.configure(settings)
    champion = MlflowClient().get_model_version_by_alias(tracking.model_name(pair), "champion")
    folder = settings.paths.models / pair.key / f"v{champion.version}"
    if not (folder / "model.onnx").exists():
        raise FileNotFoundError(f"{pair.symbol}: champion v{champion.version} is not exported")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "metadata.json"):
        shutil.copy2(folder / name, out / name)
    return {"version": champion.version, "out": str(out)}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _timeframes() -> list[str]:
    return [p.timeframe for p in load_pairs(get_settings().pairs).pairs]
