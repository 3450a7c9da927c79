"""DAG integrity: the DAG folder imports cleanly, two DAGs per stream, conventions hold, and
each DAG's tasks, edges, pools, assets and params are what the factory promises."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable

from candlecast.config import load_pairs
from candlecast.names import TRAINING_POOL
from tests.helpers import CANDLES_ONE_TASK, CANDLES_TASKS, TRAIN_TASKS

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


def test_two_dags_per_configured_stream(dagbag):
    pairs = load_pairs().pairs
    assert len(pairs) == 3
    expected = {dag_id for p in pairs for dag_id in p.stream.dag_ids}
    assert set(dagbag.dag_ids) == expected


def test_conventions(dagbag):
    for dag in dagbag.dags.values():
        assert "candlecast" in dag.tags and any(t.startswith("pair:") for t in dag.tags)
        assert not dag.catchup and dag.max_active_runs == 1
        assert dag.doc_md and dag.owner == "candlecast"
        for task in dag.tasks:
            assert task.retries >= 1, task.task_id
            assert task.execution_timeout is not None, task.task_id


def _edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, down) for t in dag.tasks for down in t.downstream_task_ids}


def test_candles_dag_tasks_edges_pool_and_asset(dagbag):
    hourly = [p for p in load_pairs().pairs if p.timeframe == "1h"]
    assert hourly
    for pair in hourly:
        dag = dagbag.get_dag(pair.stream.candles_dag_id)
        assert [t.task_id for t in dag.topological_sort()] == CANDLES_TASKS
        assert _edges(dag) == {
            ("ingest", "validate"),
            ("ingest", "features"),
            ("validate", "features"),
            ("features", "materialize"),
        }
        assert dag.get_task("ingest").pool == pair.stream.exchange_pool
        assert dag.get_task("ingest").retries > dag.get_task("validate").retries
        # warm-up reads the previous interval's candles: intervals are computed in order
        assert dag.get_task("features").depends_on_past
        outlets = [a.uri for a in dag.get_task("materialize").outlets]
        assert outlets == [pair.stream.features_asset_uri]
        assert isinstance(dag.timetable, CronDataIntervalTimetable)


def test_a_sub_hourly_candles_dag_is_one_task_with_the_same_pool_retries_and_asset(dagbag):
    """Four task processes per 5m candle cost more than the work: one task does all four,
    the DAG and its run history stay per stream."""
    sub_hourly = [p for p in load_pairs().pairs if p.timeframe == "5m"]
    assert sub_hourly
    for pair in sub_hourly:
        dag = dagbag.get_dag(pair.stream.candles_dag_id)
        assert [t.task_id for t in dag.tasks] == CANDLES_ONE_TASK
        task = dag.get_task(CANDLES_ONE_TASK[0])
        assert task.pool == pair.stream.exchange_pool and task.retries >= 4
        assert task.depends_on_past  # warm-up: intervals are computed in order
        assert [a.uri for a in task.outlets] == [pair.stream.features_asset_uri]
        assert "one task process" in dag.doc_md


def test_train_dag_tasks_edges_pools_assets_and_params(dagbag):
    for pair in load_pairs().pairs:
        stream = pair.stream
        dag = dagbag.get_dag(stream.train_dag_id)
        assert [t.task_id for t in dag.topological_sort()] == TRAIN_TASKS
        assert _edges(dag) == {
            ("training_set", "kinds"),
            ("training_set", "fit"),
            ("kinds", "fit"),
            ("training_set", "evaluate"),
            ("fit", "evaluate"),
            ("evaluate", "promote"),
            ("promote", "export_onnx"),
            ("promote", "deploy"),
            ("export_onnx", "deploy"),
            ("training_set", "train_targets"),
            ("deploy", "train_targets"),
            ("training_set", "catch_up"),
            ("train_targets", "catch_up"),
        }
        # the guard against a stranded features event asks for a run of its own DAG
        assert [a.uri for a in dag.get_task("catch_up").outlets] == [stream.retrain_asset_uri]
        assert dag.get_task("train_targets").pool == TRAINING_POOL
        assert dag.get_task("fit").pool == TRAINING_POOL
        assert dag.get_task("training_set").pool == TRAINING_POOL
        assert [a.uri for a in dag.get_task("deploy").outlets] == [stream.model_asset_uri]
        # by cadence, and by the features and retrain assets
        assert isinstance(dag.timetable, AssetOrTimeSchedule)
        assert isinstance(dag.timetable.timetable, CronDataIntervalTimetable)
        scheduled_on = {asset.uri for asset in dag.timetable.asset_condition.objects}
        assert scheduled_on == {stream.features_asset_uri, stream.retrain_asset_uri}
        assert set(dag.params) == {"kinds", "train_days", "end", "dry_run"}


def test_train_params_are_validated_by_airflow(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.get_dag(load_pairs().pairs[0].stream.train_dag_id)
    good = copy.deepcopy(dag.params)
    good.update({"kinds": ["lightgbm"], "train_days": 30, "dry_run": True})
    good.validate()
    for bad in (
        {"kinds": ["lightgmb"]},
        {"kinds": ["persistence"]},  # a baseline is scored, not trained
        {"kinds": []},
        {"train_days": -1},
        {"dry_run": "yes"},
        {"end": 12},
    ):
        params = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError):
            params.update(bad)
            params.validate()


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
    ids = sorted(
        f"{what}_{key}"
        for what in ("candles", "train", "monitor")
        for key in (
            "binance_btc_usdt_1h",
            "binance_btc_usdt_4h",
            "binance_eth_btc_5m",
            "kraken_btc_usdt_1h",
        )
    )
    assert f"IDS {ids}" in out.stdout


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


def test_a_fifty_stream_config_parses_into_its_dags(tmp_path, airflow_db):
    """A fleet: 25 streams at 5m (one-task candles DAGs) and 25 at 1h, on synthetic exchanges."""
    streams = [("ETH/BTC", f"synth{i:04d}", "5m") for i in range(25)]
    streams += [("BTC/USD", f"synth{i:04d}", "1h") for i in range(25)]
    text = "pairs:\n" + "".join(
        f"  - {{symbol: {s}, exchange: {e}, timeframe: {t}, start: 2021-01-01}}\n"
        for s, e, t in streams
    )
    out = dag_ids_for(text, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ERRORS []" in out.stdout
    ids = out.stdout.split("IDS ", 1)[1]
    assert ids.count("'candles_") == ids.count("'train_") == ids.count("'monitor_") == 50
    assert "'candles_synth0024_eth_btc_5m'" in ids and "'train_synth0024_btc_usd_1h'" in ids
