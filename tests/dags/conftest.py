"""A stream of its own for DAG tests that run its DAGs without a logical date or from a fresh
process: a manual ``dag.test()`` clears every task instance of its DAG and a run adds MLflow
runs, so these tests must not share DAGs or stores with ``pipeline_run``."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import BTC_FILE, REPO, quiet_in_process_servers

#: The bundled BTC/USD hourly candles as exchange 'sandbox' (DAG ids *_sandbox_btc_usd_1h).
OWN_PAIRS = f"""\
pairs:
  - symbol: BTC/USD
    exchange: sandbox
    replay_file: {BTC_FILE}
    timeframe: 1h
    start: 2021-06-01T00:00:00Z
    end: 2022-03-01T00:00:00Z
    schedule: "@daily"
    training: {{kinds: [lightgbm, lstm], train_days: 60, min_train_rows: 500}}
"""
#: The stream's configured end: the bundled data stops there.
OWN_END = datetime(2022, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def own_stream(airflow_db, tmp_path_factory):
    """(pair, DagBag, env): the stream's history backfilled to ``OWN_END`` - 1 day in its own
    data directory, its DAGs in the Airflow DB; ``env`` points the settings at it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    from candlecast.config import load_pairs
    from candlecast.orchestration import stages

    root = tmp_path_factory.mktemp("own_stream")
    (root / "pairs.yaml").write_text(OWN_PAIRS)
    env = {"CANDLECAST_HOME": str(root / "home"), "CANDLECAST_PAIRS": str(root / "pairs.yaml")}
    with pytest.MonkeyPatch.context() as patch:
        _apply(patch, env)
        (pair,) = load_pairs().pairs
        stages.backfill(pair, OWN_END - timedelta(days=70), OWN_END - timedelta(days=1))
        quiet_in_process_servers()  # after Airflow's import, which put its own filter first
        bag = DagBag(dag_folder=str(REPO / "dags"), include_examples=False)
        assert bag.import_errors == {}
        with create_session() as session:
            DagBundlesManager().sync_bundles_to_db(session=session)
        sync_bag_to_db(bag, "dags-folder", None)
    return pair, bag, env


@pytest.fixture
def in_own_stream(own_stream, monkeypatch):
    """The own stream, with the settings pointing at it for this test."""
    _apply(monkeypatch, own_stream[2])
    return own_stream


def _apply(patch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        patch.setenv(key, value)
    patch.delenv("CANDLECAST_METRICS_URL", raising=False)
    for name in [k for k in os.environ if k.startswith("_AIRFLOW_PARSING_CONTEXT")]:
        patch.delenv(name)
