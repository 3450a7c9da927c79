"""The embedded Airflow's SQLite connections: a transaction that starts with a savepoint (how
Airflow creates each run of a backfill) waits for another component's write instead of failing
with "database is locked" whatever the busy timeout."""

from __future__ import annotations

import importlib
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from candlecast.cli import airflow_sqlite
from candlecast.cli.airflow_local import EmbeddedAirflow
from tests.helpers import settings_in


def _engine(path, connect_args: dict) -> sa.Engine:
    """An engine as Airflow makes one for SQLite: busy timeout in the URL, WAL."""
    engine = sa.create_engine(f"sqlite:///{path}?timeout=30", connect_args=dict(connect_args))

    @sa.event.listens_for(engine, "connect")
    def wal(dbapi_connection, record):
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS run (name TEXT)")
    return engine


def _savepoint_read_then_write(engine: sa.Engine, path) -> None:
    """Read in a savepoint-started transaction, let another connection write meanwhile (a
    component at work), then write: Airflow's creation of one backfill run."""
    began = threading.Event()

    def other_component() -> None:
        with sqlite3.connect(path, timeout=30) as other:
            began.set()
            other.execute("INSERT INTO run VALUES ('scheduler')")

    writer = threading.Thread(target=other_component)
    try:
        with Session(engine) as session:
            with session.begin_nested():
                session.execute(sa.text("SELECT count(*) FROM run")).scalar()
                writer.start()
                began.wait(10)
                time.sleep(0.3)  # its write lands here, or waits for this transaction's end
                session.execute(sa.text("INSERT INTO run VALUES ('backfill')"))
            session.commit()
    finally:
        writer.join(30)


def test_a_savepoint_transaction_waits_for_another_writer(tmp_path):
    path = tmp_path / "airflow.db"
    _savepoint_read_then_write(_engine(path, airflow_sqlite.CONNECT_ARGS), path)
    with sqlite3.connect(path) as db:
        assert sorted(r[0] for r in db.execute("SELECT name FROM run")) == [
            "backfill",
            "scheduler",
        ]


def test_without_it_the_busy_timeout_does_not_help(tmp_path):
    """Why the connection class exists: SQLite fails the read transaction's write at once."""
    path = tmp_path / "airflow.db"
    began = time.monotonic()
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        _savepoint_read_then_write(_engine(path, {}), path)
    assert time.monotonic() - began < 10  # far from the 30 s busy timeout


def test_the_embedded_components_connect_with_it(tmp_path):
    local = EmbeddedAirflow.from_settings(settings_in(tmp_path))
    env = local.component_env
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("?timeout=60")
    # what Airflow's conf.getimport("database", "sql_alchemy_connect_args") resolves
    module, name = env[airflow_sqlite.CONNECT_ARGS_VAR].rsplit(".", 1)
    connect_args = getattr(importlib.import_module(module), name)
    assert connect_args["factory"] is airflow_sqlite.SavepointWritesFirst
    # `airflow db migrate` runs before the components, alone: plain connections
    assert airflow_sqlite.CONNECT_ARGS_VAR not in local.env
