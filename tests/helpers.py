"""Builders shared by tests: isolated settings and pair configs on real bundled data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from candlecast.config import DataSection, PairConfig, TrainingSection
from candlecast.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BTC_FILE = REPO / "data" / "bundled" / "BTC_USD-Hourly.csv"


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
