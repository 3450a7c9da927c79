"""Test-wide state: every test session gets its own CANDLECAST_HOME (and so its own Airflow,
MLflow, Feast and BentoML stores), set before anything reads settings or imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="candlecast-test-"))

os.environ["CANDLECAST_HOME"] = str(_HOME)
os.environ["CANDLECAST_PAIRS"] = str(REPO / "config" / "pairs.yaml")
os.environ.pop("CANDLECAST_MLFLOW_TRACKING_URI", None)
os.environ.pop("CANDLECAST_ONLINE_STORE", None)
os.environ["AIRFLOW_HOME"] = str(_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ["GX_ANALYTICS_ENABLED"] = "False"


@pytest.fixture(scope="session")
def home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def btc_candles():
    """The bundled BTC/USD hourly candles, as the replay exchange reads them."""
    from candlecast.sources import read_candle_file

    return read_candle_file(REPO / "data" / "bundled" / "BTC_USD-Hourly.csv")
