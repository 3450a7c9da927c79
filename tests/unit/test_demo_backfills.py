"""The demo creates every candles backfill before any candles run can start.

On SQLite a backfill's creation fails (500, "database is locked", part of its runs committed)
when the scheduler writes between the read and the write of one of its runs: the scheduler
must have no candles run to start while the demo creates the backfills.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from rich.console import Console

from candlecast.cli import demo
from candlecast.config import load_pairs
from tests.helpers import REPO


class RecordingAirflow:
    """The calls the demo makes, with which DAGs were unpaused at each backfill's creation."""

    def __init__(self, dag_ids: set[str], paused: set[str]) -> None:
        self.dag_ids, self.paused = dag_ids, set(paused)
        self.unpaused_at_creation: dict[str, set[str]] = {}

    def wait_for_dags(self, dag_ids: Any) -> None:
        list(dag_ids)

    def unpause(self, dag_id: str) -> None:
        self.paused.discard(dag_id)

    def pause(self, dag_id: str) -> None:
        self.paused.add(dag_id)

    def create_backfill(self, dag_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        self.unpaused_at_creation[dag_id] = {d for d in self.dag_ids if d not in self.paused}
        return {"dag_id": dag_id}

    def wait_for_backfill(self, backfill: dict[str, Any], timeout: float, on_run: Any) -> None:
        assert backfill["dag_id"] not in self.paused, "a backfill waited on a paused DAG"

    def wait_until_idle(self, dag_id: str, timeout: float, on_run: Any) -> None:
        assert dag_id not in self.paused


PAIRS = load_pairs(REPO / "config" / "pairs.yaml").pairs
#: The DAGs the demo runs (the monitor DAGs stay paused).
TRAINS = {p.stream.train_dag_id for p in PAIRS}
DAG_IDS = TRAINS | {p.stream.candles_dag_id for p in PAIRS}


def _run(monkeypatch, paused: set[str]) -> RecordingAirflow:
    monkeypatch.setattr(demo.embedded, "latest_decision", lambda pair: "kept")
    client = RecordingAirflow(DAG_IDS, paused)
    demo._run_pipelines(Console(file=io.StringIO()), client, PAIRS, runs=2)  # type: ignore[arg-type]
    return client


def test_no_candles_dag_runs_while_the_backfills_are_created(monkeypatch):
    client = _run(monkeypatch, paused=set())  # a rerun: every DAG was unpaused before
    assert set(client.unpaused_at_creation) == DAG_IDS - TRAINS
    for dag_id, unpaused in client.unpaused_at_creation.items():
        # the train DAGs must see every features event; no candles DAG may start a run yet
        assert unpaused == TRAINS, dag_id
    assert client.paused == set()  # then every candles DAG runs its backfill


def test_a_fresh_home_gets_its_paused_dags_unpaused(monkeypatch):
    client = _run(monkeypatch, paused=DAG_IDS)  # Airflow creates DAGs paused
    assert client.paused == set()
    assert all(unpaused == TRAINS for unpaused in client.unpaused_at_creation.values())
