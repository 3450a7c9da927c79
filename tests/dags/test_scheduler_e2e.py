"""End to end under the real scheduler: ``candlecast airflow`` on a free non-default port of
127.0.0.1, with its own data directory and a 2-stream config on bundled candles; backfills
created through the REST API; candles runs that trigger train runs through their features
asset (BTC/USD), and a train DAG backfilled directly (ETH/BTC); then the stores, the online
features and the MLflow registry are checked, the login is required, nothing listens beyond
the loopback, and SIGTERM leaves no process behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from candlecast.cli import embedded
from candlecast.cli.airflow_api import EXPECTED, AirflowClient, DagRunFailedError
from candlecast.config import load_pairs
from candlecast.settings import Settings
from candlecast.timeframes import to_ms
from tests.helpers import CANDLES_ONE_TASK, CANDLES_TASKS, REPO, TRAIN_TASKS, healthy

pytestmark = pytest.mark.slow

CANDLECAST = Path(sys.executable).parent / "candlecast"
#: Deadlines, not races: a loaded 2-core machine may be slow, never wrong.
START_TIMEOUT_S = 900
RUNS_TIMEOUT_S = 2400
STOP_TIMEOUT_S = 300
#: Well under the DAG file's 600 s parsing interval: the edit's parse was asked for.
EDIT_TIMEOUT_S = 300

BTC_END = datetime(2022, 3, 1, tzinfo=UTC)
ETH_END = datetime(2018, 1, 30, tzinfo=UTC)

CONFIG = f"""
defaults:
  schedule: "@daily"
  training:
    kinds: [lightgbm]
    min_train_rows: 200
    schedule: null                 # trained when its candles DAG materializes features
    params: {{lightgbm: {{n_estimators: 50}}}}
    targets: [{{target: return, horizons: [1]}}]   # the scheduler, not the targets, is tested
pairs:
  - symbol: BTC/USD
    exchange: replay
    replay_file: {REPO / "data/bundled/BTC_USD-Hourly.csv"}
    timeframe: 1h
    start: 2022-02-01T00:00:00Z
    end: {BTC_END.isoformat()}
    training: {{train_days: 10}}
  - symbol: ETH/BTC
    exchange: binance
    replay_file: {REPO / "data/bundled/freqtrade/ETH_BTC-5m.feather"}
    timeframe: 5m
    schedule: "0 */8 * * *"        # three candles runs a day
    start: 2018-01-20T00:00:00Z
    end: {ETH_END.isoformat()}
    training: {{train_days: 3, on_new_features: false, schedule: "@daily"}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(home: Path, pairs: Path) -> dict[str, str]:
    """This process's environment without the test session's Airflow and BentoML homes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "BENTOML", "CANDLECAST"))
    }
    env["CANDLECAST_HOME"] = str(home)
    env["CANDLECAST_PAIRS"] = str(pairs)
    env["CANDLECAST_SERVICE_PORT"] = str(free_port())  # deploys announce to nobody
    return env


class Deployment:
    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home"
        self.pairs_file = tmp / "pairs.yaml"
        self.pairs_file.write_text(CONFIG)
        self.settings = Settings(home=self.home, pairs=self.pairs_file)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = tmp / "candlecast-airflow.out"
        self.proc: subprocess.Popen | None = None
        self.runs: dict[str, list] = {}
        self.seconds: dict[str, float] = {}
        self.dropped: datetime | None = None

    def start(self) -> None:
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(CANDLECAST), "airflow", "--port", str(self.port)],
                env=clean_env(self.home, self.pairs_file),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Press Ctrl-C" not in self.text():
            assert self.proc.poll() is None, f"candlecast airflow exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"not ready in {START_TIMEOUT_S} s:\n{self.text()}"
            time.sleep(1)

    def text(self) -> str:
        return " ".join(self.output.read_text(errors="replace").split())

    def client(self) -> AirflowClient:
        return AirflowClient(self.url, "admin", embedded.airflow_password(self.settings))

    def tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def diagnosis(self) -> str:
        """The error lines of the Airflow components' logs (what a failure needs to be read)."""
        lines = []
        for log in sorted((self.home / "logs").glob("airflow-*.log")):
            errors = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if "error" in line.lower() or "Traceback" in line
            ]
            lines += [f"{log.name}: {line[:400]}" for line in errors[-15:]]
        return "\n".join(lines)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(15)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


def drop_last_run(client: AirflowClient, backfill: dict[str, Any]) -> datetime:
    """Leave a backfill without the run of its last interval, as a creation that SQLite
    refused half-way does: its queued run is deleted, or, where the creation already lost it
    (a loaded machine), it stays missing. Its logical date."""
    last = max(datetime.fromisoformat(d) for d in backfill[EXPECTED])
    runs = {
        datetime.fromisoformat(r.logical_date): r
        for r in client.dag_runs(backfill["dag_id"])
        if r.logical_date
    }
    run = runs.get(last)
    if run is not None:
        # the DAG is paused until now, so the scheduler has not started the run
        assert run.state == "queued", f"{run.run_id} is {run.state}, not queued"
        client.request("DELETE", f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}")
    return last


def run_pipelines(deployment: Deployment) -> None:
    """Backfills through the REST API, as an operator would; waits for every run."""
    client = deployment.client()
    pairs = {p.symbol: p for p in load_pairs(deployment.pairs_file).pairs}
    btc, eth = pairs["BTC/USD"].stream, pairs["ETH/BTC"].stream
    client.wait_for_dags([*btc.dag_ids, *eth.dag_ids])
    for dag_id in (btc.train_dag_id, btc.candles_dag_id, eth.train_dag_id):
        client.unpause(dag_id)
    began = time.monotonic()
    btc_candles = client.create_backfill(btc.candles_dag_id, BTC_END - timedelta(days=2), BTC_END)
    eth_candles = client.create_backfill(eth.candles_dag_id, ETH_END - timedelta(days=1), ETH_END)
    assert (btc_candles["max_active_runs"], btc_candles["reprocess_behavior"]) == (1, "failed")
    # A creation that failed half-way (SQLite busy: a 500 after some runs were committed, then
    # the client's retry finds the backfill): its last interval's run is not there.
    # The wait must create it again, not report success.
    deployment.dropped = drop_last_run(client, eth_candles)
    client.unpause(eth.candles_dag_id)
    deployment.runs[btc.candles_dag_id] = client.wait_for_backfill(btc_candles, RUNS_TIMEOUT_S)
    deployment.runs[eth.candles_dag_id] = client.wait_for_backfill(eth_candles, RUNS_TIMEOUT_S)
    deployment.seconds["candles"] = time.monotonic() - began
    # ETH/BTC trains on its cadence only: its last two days' train runs, backfilled directly
    eth_train = client.create_backfill(eth.train_dag_id, ETH_END - timedelta(days=2), ETH_END)
    deployment.runs[eth.train_dag_id] = client.wait_for_backfill(eth_train, RUNS_TIMEOUT_S)
    deployment.runs[btc.train_dag_id] = client.wait_until_idle(btc.train_dag_id, RUNS_TIMEOUT_S)
    deployment.seconds["all runs"] = time.monotonic() - began
    for dag_id in deployment.runs:
        deployment.runs[dag_id] = client.dag_runs(dag_id)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("scheduler-e2e"))
    began = time.monotonic()
    try:
        deployment.start()
        deployment.seconds["start"] = time.monotonic() - began
        try:
            run_pipelines(deployment)
        except Exception as exc:
            pytest.fail(f"{exc}\n{deployment.diagnosis()}")
        yield deployment
    finally:
        deployment.stop()
        print(f"\nscheduler e2e: {deployment.seconds} (s); output: {deployment.output}")


def test_every_backfilled_and_triggered_run_succeeded(deployment):
    runs = deployment.runs
    states = {dag_id: [(r.run_type, r.state) for r in found] for dag_id, found in runs.items()}
    assert states["candles_replay_btc_usd_1h"] == [("backfill", "success")] * 2
    assert states["candles_binance_eth_btc_5m"] == [("backfill", "success")] * 3
    # the interval whose run was dropped from its backfill was run by the client's repair
    eth_dates = [
        datetime.fromisoformat(r.logical_date or "") for r in runs["candles_binance_eth_btc_5m"]
    ]
    assert deployment.dropped in eth_dates
    assert states["train_binance_eth_btc_5m"] == [("backfill", "success")] * 2
    # the features asset of each BTC/USD candles run triggered its train DAG
    btc_train = states["train_replay_btc_usd_1h"]
    assert 1 <= len(btc_train) <= 2 and set(btc_train) == {("asset_triggered", "success")}
    client = deployment.client()
    for dag_id, found in runs.items():
        expected = TRAIN_TASKS
        if dag_id.startswith("candles_"):  # a sub-hourly stream runs its candles as one task
            expected = CANDLES_ONE_TASK if dag_id.endswith("_5m") else CANDLES_TASKS
        for run in found:
            tasks = {t["task_id"]: t["state"] for t in client.task_instances(run)}
            assert healthy(tasks, expected), (dag_id, run.run_id, tasks)


def test_candles_and_online_features_cover_the_last_interval(deployment):
    from candlecast.data.ingestion import validated_table
    from candlecast.features import featurestore

    store = featurestore.feature_store(deployment.settings)
    for pair in load_pairs(deployment.pairs_file).pairs:
        end = BTC_END if pair.symbol == "BTC/USD" else ETH_END
        step = {"1h": 3_600_000, "5m": 300_000}[pair.timeframe]
        day = validated_table(pair.stream, deployment.settings).read(
            to_ms(end - timedelta(days=1)), to_ms(end)
        )
        assert len(day) >= 0.95 * 86_400_000 / step, pair.stream.label
        assert day["ts"].max() == to_ms(end) - step
        online = featurestore.online_features(store, pair.stream, ["candle_ts", "close"])
        assert online["candle_ts"] == to_ms(end) - step, pair.stream.label
        assert online["close"] == pytest.approx(float(day["close"].iloc[-1]))


def test_each_stream_has_a_champion_and_a_decision_on_its_newest_data(deployment):
    from mlflow import MlflowClient

    uri = deployment.settings.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not this process's registry
    for pair in load_pairs(deployment.pairs_file).pairs:
        champion = client.get_model_version_by_alias(pair.stream.registered_model, "champion")
        assert client.get_run(champion.run_id).data.tags["stream"] == pair.stream.key
        assert (deployment.home / "models" / pair.stream.key / f"v{champion.version}").is_dir()
        # the gate decided on the run that trained up to the end of the backfilled data (it
        # may keep an earlier champion when the new challenger shows no edge)
        end = BTC_END if pair.symbol == "BTC/USD" else ETH_END
        experiment = client.get_experiment_by_name(pair.stream.experiment)
        decided = client.search_runs(
            [experiment.experiment_id],
            f"tags.interval_end = '{end.isoformat()}' and tags.`promotion.outcome` LIKE '%'",
        )
        assert decided, f"{pair.stream.label}: no gate decision for data up to {end}"


def test_the_platform_forecast_every_candle_and_monitoring_judges_them(deployment):
    """Nobody called /predict: the forecast log holds the platform's own forecasts of every
    ETH/BTC candle since its first champion (trained up to a day before the end), point in
    time, and ``candlecast monitor`` judges more than 100 of them."""
    from candlecast.serving.forecast_log import read_forecasts

    eth = load_pairs(deployment.pairs_file).get("ETH/BTC")
    found = read_forecasts(eth.stream.key, settings=deployment.settings)
    # the platform's own: its champion's, and a kept champion's losing challenger's (shadow)
    assert set(found["source"]) <= {"platform", "shadow"}
    logged = found[found["source"] == "platform"]
    first = to_ms(ETH_END - timedelta(days=1))
    assert logged["feature_ts"].min() == first
    every = set(range(first, to_ms(ETH_END) + 1, 300_000))
    assert set(logged["feature_ts"]) == every
    done = subprocess.run(
        [str(CANDLECAST), "monitor", "--pair", "ETH/BTC", "--json"],
        env=clean_env(deployment.home, deployment.pairs_file),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checked = json.loads(done.stdout)
    assert checked["realized_source"] == "platform"
    assert checked["realized"]["forecasts"] > 100
    assert checked["realized_state"] == "judged"


def test_a_failed_run_is_named_with_its_failed_task_and_log(deployment):
    """A manual train run whose window ends where no candles are stored fails at once
    (missing data cannot be retried away); the error says which run, task and log."""
    client = deployment.client()
    dag_id = load_pairs(deployment.pairs_file).get("BTC/USD").stream.train_dag_id
    run = client.trigger(dag_id, {"end": "2019-01-01T00:00:00+00:00"})
    with pytest.raises(DagRunFailedError) as failed:
        client.wait_for_run(run, RUNS_TIMEOUT_S)
    message = str(failed.value)
    assert f"DAG run {dag_id} {run.run_id} failed" in message
    assert "task training_set: failed" in message
    assert f"log: {deployment.url}/dags/{dag_id}/runs/{run.run_id}/tasks/training_set" in message
    assert re.search(r"\b\w+(Error|Exception): ", message), message  # from the task's log


def test_the_api_needs_a_login_and_listens_only_on_the_loopback(deployment):
    for method, path in (("GET", "/api/v2/dags"), ("GET", "/auth/token")):
        request = urllib.request.Request(deployment.url + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code in (401, 403), path
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for proc in deployment.tree()
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert ("127.0.0.1", deployment.port) in listening
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert deployment.port != 8080
    assert "log in as admin" in deployment.text()


def test_an_edited_config_is_applied_at_once(deployment):
    """The DAG processor parses the DAG file only every 10 minutes on its own; an edit of the
    pair config is applied when ``candlecast airflow`` sees it: a config that does not load
    is named in one line and changes nothing, a valid one gets its new stream's DAGs and
    exchange pool well before that interval."""
    client = deployment.client()
    deployment.pairs_file.write_text(CONFIG.replace("timeframe: 5m", "timeframe: 7x"))
    wait_for_output(deployment, "timeframe")
    assert client.dag("candles_binance_eth_btc_5m") is not None
    added = f"""
  - symbol: ETH/BTC
    exchange: kraken
    replay_file: {REPO / "data/bundled/freqtrade/ETH_BTC-5m.feather"}
    timeframe: 5m
    start: 2018-01-20T00:00:00Z
    end: {ETH_END.isoformat()}
    training: {{train_days: 3, on_new_features: false}}
"""
    deployment.pairs_file.write_text(CONFIG + added)
    wait_for_output(deployment, "changed (3 streams)")
    new = load_pairs(deployment.pairs_file).resolve("ETH/BTC", "kraken").stream
    client.wait_for_dags([*new.dag_ids], timeout=EDIT_TIMEOUT_S)
    assert client.request("GET", "/api/v2/pools/exchange_kraken")["slots"] >= 1


def wait_for_output(deployment: Deployment, text: str) -> None:
    deadline = time.monotonic() + EDIT_TIMEOUT_S
    while text not in deployment.text():
        assert time.monotonic() < deadline, f"{text!r} not in:\n{deployment.text()[-3000:]}"
        time.sleep(1)


def test_sigterm_stops_every_process_it_started(deployment):
    tree = deployment.tree()
    assert len(tree) >= 5  # candlecast, api-server, scheduler, dag-processor, triggerer
    assert deployment.proc is not None
    deployment.proc.send_signal(15)
    assert deployment.proc.wait(STOP_TIMEOUT_S) == 0
    deadline = time.monotonic() + 60
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree):
        assert time.monotonic() < deadline, [p for p in tree if p.is_running()]
        time.sleep(1)
    home = str(deployment.home)
    left = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("CANDLECAST_HOME") == home:
                left.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    assert left == []
    assert "stopped every Airflow process" in deployment.text()
