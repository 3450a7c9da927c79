"""A drifted pair leads to a retrain run of its train DAG, once per cooldown.

A real ``dag.test()`` of the monitor DAG for a stream whose candles are the bundled BTC/USD
history: as of 2020-03-22 its last 500 candles (the March 2020 crash) against the 500 before
(a calm February) drift, so ``request_retrain`` emits the retrain asset event with the reason,
and the scheduler's queue holds a run of the stream's train DAG; a second check within the
cooldown is rate limited: the task is skipped and no event is emitted.
"""

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import BTC_FILE, REPO, quiet_in_process_servers

pytestmark = pytest.mark.slow

PAIRS = f"""\
pairs:
  - symbol: BTC/USD
    exchange: drill
    replay_file: {BTC_FILE}
    timeframe: 1h
    start: 2020-01-01T00:00:00Z
    monitoring: {{window_candles: 500, retrain_cooldown_hours: 24}}
"""


@pytest.fixture
def drill(tmp_path, monkeypatch, airflow_db):
    """A stream of its own (replay of the bundled file as exchange 'drill') in its own data
    directory, its candles for 2020-01-15 .. 2020-03-22 validated, its DAGs in the Airflow DB."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from candlecast.config import load_pairs
    from candlecast.data import ingestion

    (tmp_path / "pairs.yaml").write_text(PAIRS)
    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANDLECAST_PAIRS", str(tmp_path / "pairs.yaml"))
    monkeypatch.delenv("CANDLECAST_METRICS_URL", raising=False)
    for name in [k for k in os.environ if k.startswith("_AIRFLOW_PARSING_CONTEXT")]:
        monkeypatch.delenv(name)
    (pair,) = load_pairs().pairs
    start, end = datetime(2020, 1, 15, tzinfo=UTC), datetime(2020, 3, 22, tzinfo=UTC)
    ingestion.ingest(pair, start, end, with_history=False)
    ingestion.validate(pair, start, end)
    quiet_in_process_servers()  # after Airflow's import, which put its own filter in front
    bag = DagBag(dag_folder=str(REPO / "dags"), include_examples=False)
    assert bag.import_errors == {}
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:  # new DAGs start paused; the scheduler runs live ones
        for dag_id in pair.stream.dag_ids:
            session.get(DagModel, dag_id).is_paused = False
    return pair, bag


def events(uri: str) -> list:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        return [e.extra for e in session.scalars(query.where(AssetModel.uri == uri))]


def queued_runs(dag_id: str) -> int:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        query = select(func.count()).where(AssetDagRunQueue.target_dag_id == dag_id)
        return int(session.scalar(query) or 0)


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_drift_requests_a_retrain_run_once_per_cooldown(drill):
    from candlecast.monitoring.store import MetricsStore

    pair, bag = drill
    stream = pair.stream
    monitor = bag.get_dag(stream.monitor_dag_id)
    assert queued_runs(stream.train_dag_id) == 0 and events(stream.retrain_asset_uri) == []

    first = monitor.test(logical_date=datetime(2020, 3, 22, tzinfo=UTC))
    assert states(first) == {"check": "success", "request_retrain": "success"}
    (extra,) = events(stream.retrain_asset_uri)
    assert extra["stream"] == stream.key
    assert extra["reason"].startswith("data drift: ")
    assert "volatility_24" in extra["reason"]
    # the train DAG is scheduled on the retrain asset: the scheduler now owes it a run
    assert queued_runs(stream.train_dag_id) == 1

    store = MetricsStore()
    (check,) = store.checks(stream.key)
    assert check.drift_detected and check.retrain and check.drift_share >= 0.5
    assert check.as_of == int(datetime(2020, 3, 22, tzinfo=UTC).timestamp() * 1000)
    assert check.report_path and "volatility_24" in Path(check.report_path).read_text()
    assert [r["reason"] for r in store.retrain_requests(stream.key)] == [extra["reason"]]

    second = monitor.test(logical_date=datetime(2020, 3, 23, tzinfo=UTC))
    assert states(second) == {"check": "success", "request_retrain": "skipped"}
    assert len(events(stream.retrain_asset_uri)) == 1  # no second event within the cooldown
    latest = store.checks(stream.key)[-1]
    assert latest.rate_limited and not latest.retrain and "rate limited" in latest.reason
