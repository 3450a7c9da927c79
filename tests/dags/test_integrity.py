"""DAG integrity: the DAG folder imports cleanly, one DAG per pair, conventions hold."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from candlecast.config import load_pairs
from tests.helpers import PIPELINE_TASKS

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "pandas",
    "numpy",
    "torch",
    "mlflow",
    "feast",
    "great_expectations",
    "lightgbm",
    "onnxruntime",
    "bentoml",
    "evidently",
    "talib",
    "ccxt",
)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_dag_per_configured_pair(dagbag):
    expected = {p.stream.dag_id for p in load_pairs().pairs}
    assert set(dagbag.dag_ids) == expected


def test_tags_retries_and_tasks(dagbag):
    for dag in dagbag.dags.values():
        assert "candlecast" in dag.tags and any(t.startswith("pair:") for t in dag.tags)
        assert not dag.catchup and dag.max_active_runs == 1
        assert [t.task_id for t in dag.topological_sort()] == PIPELINE_TASKS
        for task in dag.tasks:
            assert task.retries >= 1, task.task_id


def dag_ids_for(config_text: str, tmp_path) -> subprocess.CompletedProcess:
    config = tmp_path / "pairs.yaml"
    config.write_text(config_text)
    script = (
        "import sys; from airflow.dag_processing.dagbag import DagBag;"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r}, include_examples=False);"
        "print('ERRORS', list(bag.import_errors.values())); print('IDS', sorted(bag.dag_ids))"
    )
    # a dag.test() earlier in the session leaves the task's parsing context in os.environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env["CANDLECAST_PAIRS"] = str(config)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)


def test_factory_builds_a_dag_for_every_stream_in_any_config(tmp_path, airflow_db):
    streams = [
        ("BTC/USDT", "binance", "1h"),
        ("BTC/USDT", "binance", "4h"),
        ("BTC/USDT", "kraken", "1h"),
        ("ETH/BTC", "binance", "5m"),
    ]
    text = "pairs:\n" + "".join(
        f"  - {{symbol: {s}, exchange: {e}, timeframe: {t}, start: 2021-01-01}}\n"
        for s, e, t in streams
    )
    out = dag_ids_for(text, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ERRORS []" in out.stdout
    assert (
        "IDS ['pipeline_binance_btc_usdt_1h', 'pipeline_binance_btc_usdt_4h', "
        "'pipeline_binance_eth_btc_5m', 'pipeline_kraken_btc_usdt_1h']" in out.stdout
    )


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ("{kinds: [lightgmb]}", "unknown model kind 'lightgmb'"),
        ("{params: {lightgbm: {leaves: 3}}}", "training.params.lightgbm"),
    ],
)
def test_a_model_kind_typo_is_a_dag_import_error_naming_it(tmp_path, airflow_db, training, message):
    text = f"pairs:\n  - {{symbol: BTC/USDT, exchange: binance, training: {training}}}\n"
    out = dag_ids_for(text, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert message in out.stdout and "IDS []" in out.stdout


def test_dag_file_imports_nothing_heavy(airflow_db):
    script = (
        "import runpy, sys; before = set(sys.modules);"
        f"runpy.run_path({str(REPO / 'dags' / 'candlecast_pipelines.py')!r});"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules and m not in before];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout
