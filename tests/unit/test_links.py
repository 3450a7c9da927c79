"""Links from Airflow to a stream's MLflow experiment, run and model, the prediction service and
its Grafana dashboard (candlecast.orchestration.links), and the plugin that shows them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from candlecast.modeling.training import KindRun, TrainResult
from candlecast.names import Stream
from candlecast.orchestration import links
from candlecast.orchestration.stages import to_xcom
from tests.helpers import REPO, settings_in

STREAMS = [
    Stream("binance", "BTC/USDT", "1h"),
    Stream("replay", "BTC/USD", "1h"),
    Stream("kraken", "ETH/BTC", "5m"),
    Stream("coinbase", "A1/B2", "1d"),
]
UI = {
    "mlflow_ui_url": "https://mlflow.example.org/",
    "grafana_url": "https://grafana.example.org",
    "service_url": "https://forecast.example.org/api",
}
RUN_ID = "0123456789abcdef0123456789abcdef"
OTHER_RUN_ID = "fedcba9876543210fedcba9876543210"


def closed_port() -> int:
    """A local port nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_store(home: Path, *streams: Stream) -> tuple[str, dict[Stream, str]]:
    """A real SQLite tracking store under ``home`` holding the streams' experiments."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ids = {
        s: client.create_experiment(s.experiment, artifact_location=(home / s.key).as_uri())
        for s in streams
    }
    return uri, ids


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.key)
def test_each_dag_of_a_stream_maps_back_to_it(stream):
    assert links.stream_of_dag(stream.candles_dag_id) == stream
    assert links.stream_of_dag(stream.train_dag_id) == stream


@pytest.mark.parametrize(
    "dag_id",
    [
        "pipeline_binance_btc_usdt_1h",  # a key, but not one of the stream's DAGs
        "candles_binance_btc_usdt",
        "train_binance_btcusdt_1h",
        "train_binance_btc_usdt_1x",
        "example_bash_operator",
        "candles",
        "",
    ],
)
def test_other_dags_map_to_no_stream(dag_id):
    assert links.stream_of_dag(dag_id) is None


def test_every_stream_gets_its_own_links_when_mlflow_is_reachable(tmp_path):
    uri, ids = mlflow_store(tmp_path, *STREAMS)
    settings = settings_in(tmp_path, mlflow_tracking_uri=uri, **UI)
    seen = set()
    for stream in STREAMS:
        found = links.links(stream, settings, run_id=RUN_ID)
        experiment = f"https://mlflow.example.org/#/experiments/{ids[stream]}"
        assert found.experiment == experiment
        assert found.run == f"{experiment}/runs/{RUN_ID}"
        assert found.model == f"https://mlflow.example.org/#/models/{stream.key}_forecaster"
        assert found.service == "https://forecast.example.org/api/docs"
        assert found.dashboard == f"https://grafana.example.org/d/cc-{stream.key}"
        seen.add((found.experiment, found.model, found.dashboard))
    assert len(seen) == len(STREAMS)
    assert len(set(ids.values())) == len(STREAMS)


def test_unreachable_mlflow_gives_a_search_link_not_an_error(tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    settings = settings_in(tmp_path, mlflow_tracking_uri=uri, **UI)
    stream = STREAMS[0]
    assert links.experiment_id(stream, settings) is None
    found = links.links(stream, settings, run_id=RUN_ID)
    assert found.experiment == (
        "https://mlflow.example.org/#/experiments"
        "?experimentSearchFilter=candlecast-binance_btc_usdt_1h"
    )
    assert found.run == f"https://mlflow.example.org/#/runs/{RUN_ID}"
    # the links that need no lookup are the same either way
    assert found.model == "https://mlflow.example.org/#/models/binance_btc_usdt_1h_forecaster"
    assert found.dashboard == "https://grafana.example.org/d/cc-binance_btc_usdt_1h"


def test_a_missing_store_is_not_created_and_a_later_experiment_is_found(tmp_path):
    stream = STREAMS[1]
    settings = settings_in(tmp_path)  # default: SQLite under the home, not there yet
    assert links.experiment_id(stream, settings) is None
    assert not (tmp_path / "mlflow" / "mlflow.db").exists()
    (tmp_path / "mlflow").mkdir()
    _, ids = mlflow_store(tmp_path / "mlflow", stream)
    # misses are not remembered: the experiment created since is found
    assert links.experiment_id(stream, settings) == ids[stream]


def test_default_urls_come_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CANDLECAST_SERVICE_PORT", "3100")
    monkeypatch.setenv("CANDLECAST_GRAFANA_URL", "http://grafana.local:3001/")
    settings = settings_in(tmp_path)
    stream = STREAMS[2]
    assert links.service_url(settings) == "http://127.0.0.1:3100/docs"
    assert (
        links.dashboard_url(stream, settings) == "http://grafana.local:3001/d/cc-kraken_eth_btc_5m"
    )
    assert links.model_url(stream, settings).startswith("http://127.0.0.1:5000/#/models/")


def test_the_run_a_task_returned_is_found_in_its_xcom():
    chosen = KindRun("lightgbm", OTHER_RUN_ID, f"runs:/{OTHER_RUN_ID}/model", {"rmse": 0.1})
    trained = TrainResult([chosen], "rmse", chosen, {}, parent_run_id=RUN_ID)
    assert links.run_id_of(to_xcom(trained)) == RUN_ID  # the training task's own run
    unparented = TrainResult([chosen], "rmse", chosen)
    assert links.run_id_of(to_xcom(unparented)) == OTHER_RUN_ID  # its challenger
    assert links.run_id_of(to_xcom(chosen)) == OTHER_RUN_ID
    assert links.run_id_of(json.dumps(to_xcom(trained))) == RUN_ID  # stored as JSON text
    assert links.run_id_of(json.dumps(json.dumps(to_xcom(chosen)))) == OTHER_RUN_ID


@pytest.mark.parametrize(
    "value",
    [None, {}, {"rows": 24}, {"run_id": "not-a-run"}, {"run_id": RUN_ID.upper()}, "{", [RUN_ID]],
)
def test_values_without_a_run_give_no_run(value):
    assert links.run_id_of(value) is None


def test_task_instance_links_of_pair_dags_and_none_for_others(tmp_path, monkeypatch):
    from airflow.models.taskinstancekey import TaskInstanceKey

    from candlecast.orchestration import ui

    for name, value in UI.items():
        monkeypatch.setenv(f"CANDLECAST_{name.upper()}", value)
    monkeypatch.setenv("CANDLECAST_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    stream = STREAMS[0]
    by_name = {link.name: link for link in ui.operator_links()}
    assert set(by_name) == {*links.Links(stream, "", "", "", "").named(), ui.RUN_LINK}
    key = TaskInstanceKey(stream.train_dag_id, "train", "manual__1", 1, -1)
    assert by_name["Grafana dashboard"].get_link(None, ti_key=key) == (
        "https://grafana.example.org/d/cc-binance_btc_usdt_1h"
    )
    assert by_name["Prediction service"].get_link(None, ti_key=key) == (
        "https://forecast.example.org/api/docs"
    )
    other = TaskInstanceKey("example_bash_operator", "run", "manual__1", 1, -1)
    assert all(link.get_link(None, ti_key=other) == "" for link in by_name.values())


def test_airflow_loads_the_plugin_from_the_repo(tmp_path):
    env = dict(os.environ)
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run(
        [str(airflow), "plugins", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to" not in done.stderr, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)}
    plugin = plugins["candlecast"]
    assert plugin["source"].endswith("candlecast_plugin.py")
    assert len(plugin["global_operator_extra_links"]) == 5
    [view] = plugin["external_views"]
    assert view["destination"] == "dag" and "{DAG_ID}" in view["href"]
    assert view["href"].startswith(plugin["fastapi_apps"][0]["url_prefix"] + "/")


@pytest.mark.slow
def test_experiments_are_looked_up_over_http_in_a_real_mlflow_server(tmp_path):
    from candlecast.cli import embedded

    found_stream, missing_stream = STREAMS[0], STREAMS[1]
    uri, ids = mlflow_store(tmp_path, found_stream)
    port = closed_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", uri]
    server = embedded.start(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        tmp_path / "mlflow.log",
    )
    try:
        tracking = f"http://127.0.0.1:{port}"
        embedded.wait_http(f"{tracking}/health", timeout=600, proc=server)
        settings = settings_in(tmp_path, mlflow_tracking_uri=tracking, **UI)
        assert links.experiment_id(found_stream, settings) == ids[found_stream]
        assert links.experiment_id(missing_stream, settings) is None  # a 404, not an error
        found = links.links(found_stream, settings, run_id=RUN_ID)
        assert (
            found.run
            == f"https://mlflow.example.org/#/experiments/{ids[found_stream]}/runs/{RUN_ID}"
        )
    finally:
        embedded.stop([server])


@pytest.mark.slow
def test_the_run_link_reads_what_a_real_task_returned(airflow_db, tmp_path, monkeypatch):
    """A task of a pair's train DAG really runs (``airflow dags test``) and returns a run id;
    the link the API server would compute for it reads it from the metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.session import create_session

    from candlecast.orchestration import ui

    stream = Stream("kraken", "SOL/EUR", "1h")  # not in the pair config: no DAG of its own
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "train.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG, task\n"
        f"with DAG({stream.train_dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1)):\n"
        "    @task\n"
        "    def training_set():\n"
        f"        return {{'parent_run_id': {RUN_ID!r}, 'rows': 2880}}\n"
        "    training_set()\n"
    )
    env = dict(os.environ, AIRFLOW__CORE__DAGS_FOLDER=str(dags))
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run(
        [str(airflow), "dags", "test", stream.train_dag_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == stream.train_dag_id).one()
        key = TaskInstanceKey(stream.train_dag_id, "training_set", run.run_id, 1, -1)
    monkeypatch.setenv("CANDLECAST_MLFLOW_UI_URL", UI["mlflow_ui_url"])
    monkeypatch.setenv("CANDLECAST_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    assert links.run_id_of(ui.task_return_value(key)) == RUN_ID
    [run_link] = [link for link in ui.operator_links() if link.name == ui.RUN_LINK]
    assert run_link.get_link(None, ti_key=key) == f"https://mlflow.example.org/#/runs/{RUN_ID}"
    # a task that returned nothing links the experiment instead
    nothing = TaskInstanceKey(stream.train_dag_id, "training_set", "no-such-run", 1, -1)
    assert "experimentSearchFilter" in run_link.get_link(None, ti_key=nothing)
