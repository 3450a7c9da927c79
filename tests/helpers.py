"""Builders shared by tests: isolated settings and pair configs on real bundled data."""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path

from candlecast.config import DataSection, PairConfig, TrainingSection
from candlecast.modeling.card import ModelCard
from candlecast.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BTC_FILE = REPO / "data" / "bundled" / "BTC_USD-Hourly.csv"


#: Third-party deprecations raised inside the servers some tests run in-process: MLflow's app
#: imports Starlette's WSGI middleware; Airflow's Execution API (``dag.test()``) builds a Cadwyn
#: app with its deprecated changelog. The ini filters them too, but Airflow, when first imported,
#: puts a "default" filter for warnings attributed to its own modules in front of every filter
#: there is, and Cadwyn's is attributed to Airflow's module that calls it.
IN_PROCESS_SERVER_WARNINGS = (
    ("Cadwyn's changelog feature is deprecated", DeprecationWarning),
    ("starlette.middleware.wsgi is deprecated", UserWarning),
)


def quiet_in_process_servers() -> None:
    """Filter :data:`IN_PROCESS_SERVER_WARNINGS` ahead of every filter in place now (Airflow's
    included, when it was imported); pytest restores the filters after each test."""
    for message, category in IN_PROCESS_SERVER_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)


#: The candles DAG's tasks, in dependency order.
CANDLES_TASKS = ["ingest", "validate", "features", "materialize"]
#: A sub-hourly stream's candles DAG: the same four steps in one task process.
CANDLES_ONE_TASK = ["ingest_and_materialize"]
#: The train DAG's tasks, in dependency order (``fit`` is mapped over the model kinds).
TRAIN_TASKS = [
    "training_set",
    "kinds",
    "fit",
    "evaluate",
    "promote",
    "export_onnx",
    "deploy",
    "train_targets",
    "catch_up",
]


def healthy(states: dict[str, str], expected: list[str]) -> bool:
    """Whether a run's task states are those of a healthy run of a DAG with ``expected`` tasks:
    each succeeded, but ``catch_up``, which is skipped when no newer features wait."""
    wanted = dict.fromkeys(expected, "success")
    if "catch_up" in wanted and states.get("catch_up") == "skipped":
        wanted["catch_up"] = "skipped"
    return states == wanted


def settings_in(home: Path, **overrides) -> Settings:
    return Settings(home=home, pairs=REPO / "config" / "pairs.yaml", **overrides)


def btc_pair(**overrides) -> PairConfig:
    """The bundled BTC/USD hourly stream; ``overrides`` may set sections (``training={...}``)
    or single training/data keys (``train_days=30``, ``max_close_step=0.1``)."""
    fields: dict = {
        "symbol": "BTC/USD",
        "exchange": "replay",
        "replay_file": BTC_FILE,
        "timeframe": "1h",
        "start": datetime(2021, 6, 1),
        "end": datetime(2022, 3, 1),
        "training": {"train_days": 60},
    }
    sections = {
        name: set(model.model_fields)
        for name, model in (("training", TrainingSection), ("data", DataSection))
    }
    for key, value in overrides.items():
        section = next((s for s, keys in sections.items() if key in keys), None)
        if section:
            fields[section] = {**fields.get(section, {}), key: value}
        else:
            fields[key] = value
    return PairConfig(**fields)


def model_card(**overrides) -> ModelCard:
    """A next-candle return model's card (the fields a test does not care about filled in)."""
    fields = {
        "stream": "replay_btc_usd_1h",
        "exchange": "replay",
        "symbol": "BTC/USD",
        "timeframe": "1h",
        "target": "return",
        "horizon": 1,
        "target_key": "return_h1",
        "outputs": ["log_return"],
        "kind": "lightgbm",
        "registered_model": "candlecast-replay-btc-usd-1h",
        "version": "1",
        "features": ["a", "b"],
        "train_start": "2024-01-01T00:00:00+00:00",
        "train_end": "2024-02-01T00:00:00+00:00",
        "holdout_start": "2024-02-01T01:00:00+00:00",
        "holdout_end": "2024-02-10T00:00:00+00:00",
        "interval_end": "2024-02-10T01:00:00+00:00",
        "data_version": "v",
        "scores": {"rmse": 0.01},
        "baseline": "persistence",
        "baseline_scores": {"rmse": 0.01},
        "decision": "test",
    }
    return ModelCard.model_validate(fields | overrides)


def deploy_record(folder: Path, payload: bytes, card: ModelCard) -> None:
    """``model.onnx`` (``payload``, an ONNX model: ``card`` is embedded in it) and its
    ``export.json`` in ``folder``, as an export writes them."""
    import hashlib

    import onnx

    from candlecast.modeling.exported import ExportedModel

    body = card.embed(onnx.load_from_string(payload)).SerializeToString()
    (folder / "model.onnx").write_bytes(body)
    ExportedModel(
        card=card,
        onnx_sha256=hashlib.sha256(body).hexdigest(),
        path=str(folder / "model.onnx"),
        parity_max_abs_diff=0.0,
        parity_max_rel_diff=0.0,
        parity_rows=0,
    ).write(folder)
