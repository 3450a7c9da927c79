"""DAG integrity: the DAG folder imports cleanly, one DAG per pair, conventions hold."""

import os
import subprocess
import sys
from pathlib import Path

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
    expected = {f"pipeline_{p.key}" for p in load_pairs().pairs}
    assert set(dagbag.dag_ids) == expected


def test_tags_retries_and_tasks(dagbag):
    for dag in dagbag.dags.values():
        assert "candlecast" in dag.tags and any(t.startswith("pair:") for t in dag.tags)
        assert not dag.catchup and dag.max_active_runs == 1
        assert [t.task_id for t in dag.topological_sort()] == PIPELINE_TASKS
        for task in dag.tasks:
            assert task.retries >= 1, task.task_id


def test_factory_builds_a_dag_for_every_pair_in_any_config(tmp_path, airflow_db):
    config = tmp_path / "pairs.yaml"
    config.write_text(
        "pairs:\n"
        + "".join(
            f"  - {{symbol: {s}, replay_file: {REPO}/data/bundled/BTC_USD-Hourly.csv,"
            f" start: 2021-01-01}}\n"
            for s in ("BTC/USD", "ETH/BTC", "SOL/USDT")
        )
    )
    script = (
        "import sys; from airflow.dag_processing.dagbag import DagBag;"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r}, include_examples=False);"
        "assert not bag.import_errors, bag.import_errors; print(sorted(bag.dag_ids))"
    )
    # a dag.test() earlier in the session leaves the task's parsing context in os.environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env["CANDLECAST_PAIRS"] = str(config)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "['pipeline_btc_usd', 'pipeline_eth_btc', 'pipeline_sol_usdt']" in out.stdout


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
