"""The production configuration, for real, on one machine: Airflow with the CeleryExecutor on
PostgreSQL (metadata, Celery results) and Redis (broker), two ``airflow celery worker``
processes, the MLflow server (basic-auth app) on PostgreSQL, the Feast online store in Redis
(:mod:`candlecast.testing.stack`). A backfill of one stream's candles DAG is created through
the REST API; its features asset events trigger the train DAG; every task runs on a worker.
Then the stores under the stack's data directory, the online features in Redis, the registry
in MLflow's PostgreSQL database and the workers' own logs are checked.

Before that, the set-up measures scale-out (:mod:`candlecast.testing.scaleout`, the small
version of ``bench/bench_scaleout.py``): the stack starts with one worker, a few 5m streams'
candles backfills run, the second worker joins and the next candles run; it prints DAG runs per
minute and where the CPU went. Only correctness is asserted: every run succeeded, on the one
worker, then on both.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest

from candlecast.cli.airflow_api import DagRun
from candlecast.config import PairConfig, load_pairs
from candlecast.testing import scaleout
from candlecast.testing.stack import CeleryStack, running
from candlecast.timeframes import to_ms
from tests.helpers import CANDLES_TASKS, REPO, TRAIN_TASKS, healthy

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Redis databases of this test (test_redis_online_store uses 15; nothing uses these).
BROKER_DB, ONLINE_DB = 13, 14
#: Deadlines, not races: a loaded 2-core machine may be slow, never wrong.
RUNS_TIMEOUT_S = 2400
END = datetime(2022, 3, 1, tzinfo=UTC)
DAYS = 2
HOUR_MS = 3_600_000

CONFIG = f"""
defaults:
  schedule: "@daily"
  training:
    kinds: [lightgbm]
    train_days: 30
    schedule: null                 # trained when its candles DAG materializes features
    params: {{lightgbm: {{n_estimators: 50}}}}
    # the main return alone: the stack, not the targets, is tested here (every other
    # target's fits and gates cost minutes of MLflow requests, each a basic-auth scrypt check)
    targets: [{{target: return, horizons: [1]}}]
pairs:
  - symbol: BTC/USD
    exchange: replay
    replay_file: {REPO / "data/bundled/BTC_USD-Hourly.csv"}
    timeframe: 1h
    start: 2022-02-01T00:00:00Z
    end: {END.isoformat()}
"""
#: Scale-out in the set-up: streams x candles per phase, with one worker and then two.
SCALE_STREAMS, SCALE_CANDLES, SCALE_WORKERS = 2, 2, [1, 2]


@dataclass
class Outcome:
    """What the stack did: the pair, its runs and their task instances, phase durations."""

    stack: CeleryStack
    pair: PairConfig
    runs: dict[str, list[DagRun]] = field(default_factory=dict)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    scale: list[scaleout.Phase] = field(default_factory=list)

    def all_tasks(self) -> list[dict[str, Any]]:
        """Every task instance: the stream's pipeline's and the scale-out phases'."""
        ours = [task for tasks in self.tasks.values() for task in tasks]
        return ours + [task for phase in self.scale for task in phase.tasks]


def measure_scale_out(outcome: Outcome) -> None:
    """The synthetic 5m streams' candles with one worker, then two (the second one started
    here); print the figures."""
    stack = outcome.stack
    began = time.monotonic()
    scaleout.load_history(stack, scaleout.synthetic_dag_ids(stack))
    outcome.seconds["scale-out history"] = time.monotonic() - began
    for phase in scaleout.scale_out(stack, SCALE_WORKERS, SCALE_CANDLES, RUNS_TIMEOUT_S):
        outcome.scale.append(phase)
    outcome.seconds["scale-out"] = time.monotonic() - began
    print(f"\nscale-out on the Celery stack:\n{scaleout.table(outcome.scale)}")


def run_pipeline(outcome: Outcome) -> None:
    """Pools, unpause, a backfill of the candles DAG; wait for it and the train runs its
    features events trigger; collect every run's task instances."""
    stack, stream = outcome.stack, outcome.pair.stream
    client = stack.client()
    client.wait_for_dags(stream.dag_ids)
    for dag_id in (stream.train_dag_id, stream.candles_dag_id):
        client.unpause(dag_id)
    began = time.monotonic()
    backfill = client.create_backfill(stream.candles_dag_id, END - timedelta(days=DAYS), END)
    client.wait_for_backfill(backfill, RUNS_TIMEOUT_S)
    client.wait_until_idle(stream.train_dag_id, RUNS_TIMEOUT_S)
    outcome.seconds["runs"] = time.monotonic() - began
    for dag_id in stream.dag_ids:
        outcome.runs[dag_id] = client.dag_runs(dag_id)
        for run in outcome.runs[dag_id]:
            outcome.tasks[run.run_id] = client.task_instances(run)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    root = tmp_path_factory.mktemp("celery-stack")
    pairs = root / "pairs.yaml"
    phases = len(SCALE_WORKERS)
    pairs.write_text(CONFIG + scaleout.stream_pairs(SCALE_STREAMS, SCALE_CANDLES * phases))
    stack = CeleryStack(root, pairs, broker_db=BROKER_DB, online_db=ONLINE_DB, workers=1)
    outcome = Outcome(stack, load_pairs(pairs).pairs[0])
    began = time.monotonic()
    try:
        with running(stack):
            from candlecast.cli.airflow_local import pools

            outcome.seconds["start"] = time.monotonic() - began
            stack.create_pools(pools(load_pairs(stack.pairs)))
            measure_scale_out(outcome)
            run_pipeline(outcome)
            yield outcome
        assert stack.leftovers() == [], "processes outlived the stack"
    finally:
        outcome.seconds["total"] = time.monotonic() - began
        print(f"\ncelery stack: {outcome.seconds} (s); logs were in {stack.logs}")


@pytest.fixture(autouse=True)
def logs_on_failure(request, outcome):
    """A failed check prints where the stack's logs are, and their tails."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        print(outcome.stack.report())


def test_backfill_and_triggered_train_runs_succeeded(outcome):
    stream = outcome.pair.stream
    candles = [(r.run_type, r.state) for r in outcome.runs[stream.candles_dag_id]]
    assert candles == [("backfill", "success")] * DAYS
    # each candles run's features event triggers a train run (two may be folded into one)
    train = [(r.run_type, r.state) for r in outcome.runs[stream.train_dag_id]]
    assert 1 <= len(train) <= DAYS and set(train) == {("asset_triggered", "success")}
    for dag_id, runs in outcome.runs.items():
        expected = CANDLES_TASKS if dag_id == stream.candles_dag_id else TRAIN_TASKS
        for run in runs:
            states = {t["task_id"]: t["state"] for t in outcome.tasks[run.run_id]}
            assert healthy(states, expected), (run.run_id, states)


def test_scale_out_runs_succeeded_on_one_worker_then_two(outcome):
    stack = outcome.stack
    assert [phase.workers for phase in outcome.scale] == SCALE_WORKERS
    for phase in outcome.scale:
        runs = {(r.dag_id, r.run_type, r.state) for r in phase.runs}
        assert len(phase.runs) == SCALE_STREAMS * SCALE_CANDLES, phase.workers
        assert {(run_type, state) for _, run_type, state in runs} == {("backfill", "success")}
        assert {t["state"] for t in phase.tasks} == {"success"}, phase.workers
        # every worker of the phase took tasks, and no other process did
        assert set(phase.tasks_per_worker) == set(stack.worker_names[: phase.workers])


def test_airflow_metadata_is_in_postgres(outcome):
    stack = outcome.stack
    rows = stack.services.query(
        stack.airflow_database, "SELECT dag_id, run_id, state FROM dag_run ORDER BY id"
    )
    every = [*outcome.runs.values(), *(phase.runs for phase in outcome.scale)]
    api = {(r.dag_id, r.run_id, r.state) for runs in every for r in runs}
    assert set(rows) == api
    assert not list(stack.home.rglob("airflow.db")), "a SQLite metadata DB was created"


def test_every_task_ran_on_a_celery_worker(outcome):
    stack = outcome.stack
    logs = {name: stack.log(name).read_text(errors="replace") for name in stack.worker_names}
    for task in outcome.all_tasks():
        where = f"{task['dag_id']}.{task['task_id']} of {task['dag_run_id']}"
        assert task["hostname"] in stack.worker_names, where
        assert task["queue"] == "default", where
        # the worker that says it ran the task logged the workload it received from Celery
        assert str(task["id"]) in logs[task["hostname"]], where
    # every task's Celery result goes to the result backend (PostgreSQL) once the worker's
    # task returns, which is after Airflow has the task instance's state: polled
    deadline = time.monotonic() + 300
    while (done := succeeded_celery_tasks(stack)) < len(outcome.all_tasks()):
        assert time.monotonic() < deadline, f"{done} Celery results of {len(outcome.all_tasks())}"
        time.sleep(2)


def succeeded_celery_tasks(stack: CeleryStack) -> int:
    sql = "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'"
    return int(stack.services.query(stack.airflow_database, sql)[0][0])


def test_the_workers_are_distinct_celery_nodes(outcome):
    from celery import Celery

    stack = outcome.stack
    app = Celery(broker=stack.services.redis_url(stack.broker_db))
    try:
        replies = app.control.ping(timeout=30)
    finally:
        app.close()
    nodes = sorted(node.split("@")[0] for reply in replies for node in reply)
    assert nodes == stack.worker_names


def test_candles_are_validated_under_the_stack_home(outcome):
    from candlecast.data.ingestion import validated_table

    stream = outcome.pair.stream
    settings = outcome.stack.settings()
    candles = validated_table(stream, settings).read(to_ms(END - timedelta(days=DAYS)), to_ms(END))
    assert len(candles) == DAYS * 24
    assert candles["ts"].max() == to_ms(END) - HOUR_MS
    assert stream.candle_dir(settings.paths.validated).is_dir()


def test_latest_features_are_served_from_redis(outcome):
    import redis

    from candlecast.data.ingestion import validated_table
    from candlecast.features import featurestore

    stack, stream = outcome.stack, outcome.pair.stream
    settings = stack.settings()
    online = featurestore.online_features(
        featurestore.feature_store(settings), stream, ["candle_ts", "close"]
    )
    last = validated_table(stream, settings).read(to_ms(END) - HOUR_MS, to_ms(END))
    assert online["candle_ts"] == to_ms(END) - HOUR_MS
    assert online["close"] == pytest.approx(float(last["close"].iloc[-1]))
    assert redis.Redis(port=stack.services.redis_port, db=stack.online_db).dbsize() > 0
    assert not (settings.paths.feast / "online_store.db").exists()


def test_champion_is_registered_in_mlflow_on_postgres(outcome):
    from mlflow import MlflowClient

    stack, stream = outcome.stack, outcome.pair.stream
    client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    login = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": stack.password}
    with mock.patch.dict(os.environ, login):
        champion = client.get_model_version_by_alias(stream.registered_model, "champion")
        status = client.get_run(champion.run_id).info.status
    assert status == "FINISHED"
    aliases = stack.services.query(
        stack.mlflow_database,
        "SELECT alias, version FROM registered_model_aliases WHERE name = %s",
        stream.registered_model,
    )
    assert ("champion", int(champion.version)) in aliases
    runs = stack.services.query(
        stack.mlflow_database,
        "SELECT count(*) FROM runs JOIN experiments USING (experiment_id)"
        " WHERE experiments.name = %s",
        stream.experiment,
    )
    assert runs[0][0] >= 2  # the training run and its lightgbm child, at least
    # artifacts went through the server into its artifact store; no local tracking store
    assert any((stack.home / "mlflow-artifacts").rglob("MLmodel"))
    assert not (stack.home / "mlflow").exists()
    assert (stack.home / "models" / stream.key / f"v{champion.version}" / "model.onnx").exists()


def test_mlflow_needs_a_login(outcome):
    stack, stream = outcome.stack, outcome.pair.stream
    url = f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/get?name={stream.registered_model}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=60)
    assert refused.value.code == 401
