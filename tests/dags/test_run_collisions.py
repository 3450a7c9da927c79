"""Collisions between manual runs, backfills and the scheduler's runs, against a real Airflow
3.2 API server (only the API server: runs are created and their states set through the REST
API, so no task runs and nothing waits on a scheduler)."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from candlecast.cli.airflow_api import (
    EXPECTED,
    KEPT,
    AirflowApiError,
    AirflowClient,
    NoIntervalsError,
    RunCollisionError,
)
from tests.helpers import BTC_FILE, REPO

pytestmark = pytest.mark.slow

#: A daily stream of its own (exchange 'collide'), so no other test's runs are in its DAGs.
PAIRS = f"""\
pairs:
  - symbol: BTC/USD
    exchange: collide
    replay_file: {BTC_FILE}
    timeframe: 1h
    start: 2022-01-01T00:00:00Z
    end: 2022-03-01T00:00:00Z
    schedule: "@daily"
"""
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory) -> Iterator[tuple[AirflowClient, object]]:
    """(client, pair): the stream's DAGs in the session's Airflow DB, served by a real API
    server on a free port of 127.0.0.1."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    from candlecast.cli import embedded
    from candlecast.config import load_pairs
    from candlecast.settings import get_settings

    root = tmp_path_factory.mktemp("collisions")
    (root / "pairs.yaml").write_text(PAIRS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CANDLECAST_PAIRS", str(root / "pairs.yaml"))
        # a parsing context another test's in-process run left would make the DAG file build
        # that one DAG only
        for name in [k for k in os.environ if k.startswith("_AIRFLOW_PARSING_CONTEXT")]:
            patch.delenv(name)
        (pair,) = load_pairs().pairs
        bag = DagBag(dag_folder=str(REPO / "dags"), include_examples=False)
        assert bag.import_errors == {}
        with create_session() as session:
            DagBundlesManager().sync_bundles_to_db(session=session)
        sync_bag_to_db(bag, "dags-folder", None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = get_settings()
    env = embedded.airflow_env(settings, "127.0.0.1", port)
    command = [str(embedded.BIN / "airflow"), "api-server", "--port", str(port)]
    proc = embedded.start(command, root / "api-server.log", env)
    base = embedded.airflow_base_url("127.0.0.1", port)
    try:
        embedded.wait_http(f"{base}/api/v2/monitor/health", timeout=300, proc=proc)
        yield AirflowClient(base, "admin", embedded.airflow_password(settings)), pair
    finally:
        embedded.stop([proc], timeout=60)


@pytest.fixture(autouse=True)
def _no_backfill_left_active(api):
    """Each test on its own: a backfill one leaves active (its runs stay queued without a
    scheduler) is cancelled, so it cannot refuse the next one's (409)."""
    yield
    client, pair = api
    for dag_id in pair.stream.dag_ids:
        active = client.active_backfill(dag_id)
        if active is not None:
            client.request("PUT", f"/api/v2/backfills/{active['id']}/cancel")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}"


def backfilled(client: AirflowClient, dag_id: str, states: dict[datetime, str]) -> list[str]:
    """Runs of a finished backfill (created through the API, then their states set): one per
    logical date, in that state; their ids."""
    first, last = min(states), max(states)
    body = {"dag_id": dag_id, "from_date": _iso(first), "to_date": _iso(last)}
    backfill = client.request("POST", "/api/v2/backfills", body | {"max_active_runs": 1})
    runs = client.request(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns", logical_date_gte=_iso(first), limit=100
    )
    ids = {}
    for run in runs["dag_runs"]:
        moment = datetime.fromisoformat(run["logical_date"])
        if moment in states:
            path = _run_path(dag_id, run["dag_run_id"])
            client.request("PATCH", path, {"state": states[moment]})
            ids[moment] = run["dag_run_id"]
    client.request("PUT", f"/api/v2/backfills/{backfill['id']}/cancel")  # finished: none queued
    return [ids[moment] for moment in sorted(states)]


def backfill_ids(client: AirflowClient, dag_id: str) -> list[int]:
    body = client.request("GET", "/api/v2/backfills", dag_id=dag_id, limit=100)
    return [b["id"] for b in body["backfills"]]


def test_a_backfill_of_intervals_that_all_succeeded_creates_nothing_and_names_the_kept_runs(
    api, caplog
):
    client, pair = api
    dag_id = pair.stream.monitor_dag_id
    first = datetime(2022, 2, 1, tzinfo=UTC)
    kept = backfilled(client, dag_id, {first + i * DAY: "success" for i in range(3)})
    # a manual run without a logical date holds none: it is beside the latest interval's run
    manual = client.trigger(dag_id)
    assert manual.logical_date is None and manual.state == "queued"
    before = backfill_ids(client, dag_id)
    caplog.set_level(logging.INFO, logger="candlecast")

    backfill = client.create_backfill(dag_id, first, first + 3 * DAY)

    assert backfill["id"] is None and backfill[KEPT] == kept
    assert backfill_ids(client, dag_id) == before  # no empty backfill that looks like work
    assert client.wait_for_backfill(backfill, timeout=5) == []
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("nothing to backfill" in line and kept[-1] in line for line in said), said


def test_a_manual_run_with_a_logical_date_is_named_not_a_skipped_interval(api):
    """Airflow gives a manual run at 02-12 the interval 02-11..02-12 and the logical date
    02-12, which is the date of the interval 02-12..02-13: a backfill must not count it as
    that interval's run."""
    client, pair = api
    dag_id = pair.stream.monitor_dag_id
    first = datetime(2022, 2, 10, tzinfo=UTC)
    backfilled(client, dag_id, {first: "success", first + DAY: "success"})
    # as the UI's Trigger with a logical date, or the REST API with one
    taken = first + 2 * DAY
    with pytest.raises(AirflowApiError, match="409"):  # Airflow's own answer on a held date
        client.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": _iso(first)})
    manual = client.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": _iso(taken)})
    assert manual["data_interval_end"] == _iso(taken)
    client.request("PATCH", _run_path(dag_id, manual["dag_run_id"]), {"state": "success"})
    before = backfill_ids(client, dag_id)

    with pytest.raises(RunCollisionError) as collided:
        client.create_backfill(dag_id, first, first + 3 * DAY)

    message = str(collided.value)
    assert f"{manual['dag_run_id']} (success)" in message
    assert "logical date 2022-02-12T00:00Z" in message and "delete it" in message
    assert "\n" not in message
    assert backfill_ids(client, dag_id) == before


def test_a_run_still_in_flight_is_named_not_skipped(api):
    client, pair = api
    dag_id = pair.stream.candles_dag_id
    first = datetime(2022, 2, 15, tzinfo=UTC)
    # a run of the interval 02-16..02-17, as the scheduler would create it, not yet run
    body = {
        "logical_date": _iso(first + DAY),
        "data_interval_start": _iso(first + DAY),
        "data_interval_end": _iso(first + 2 * DAY),
    }
    queued = client.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
    before = backfill_ids(client, dag_id)

    with pytest.raises(RunCollisionError) as collided:
        client.create_backfill(dag_id, first, first + 2 * DAY)

    message = str(collided.value)
    assert f"{queued['dag_run_id']} (queued)" in message and "2022-02-16T00:00Z" in message
    assert "wait until it has finished" in message
    assert backfill_ids(client, dag_id) == before


def test_a_failed_run_is_run_again_or_named_when_reprocess_keeps_it(api, caplog):
    client, pair = api
    dag_id = pair.stream.monitor_dag_id
    first = datetime(2022, 2, 20, tzinfo=UTC)
    ok, failed = backfilled(client, dag_id, {first: "success", first + DAY: "failed"})

    with pytest.raises(RunCollisionError, match=rf"{re.escape(failed)} \(failed\).*'none'"):
        client.create_backfill(dag_id, first, first + 2 * DAY, reprocess="none")

    caplog.set_level(logging.INFO, logger="candlecast")
    backfill = client.create_backfill(dag_id, first, first + 2 * DAY)

    assert (backfill[EXPECTED], backfill[KEPT]) == ([_iso(first + DAY)], [ok])
    again = client.dag_run(dag_id, failed)
    assert (again.state, again.run_type) == ("queued", "backfill")
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"{dag_id}: runs again: {failed}" in said, said
    # asked again while it runs: the same backfill, waited on, not a collision
    assert client.create_backfill(dag_id, first, first + 2 * DAY)["id"] == backfill["id"]


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        # a daily schedule: no interval starts between 01:00 and 02:00
        (datetime(2022, 2, 25, 1, tzinfo=UTC), datetime(2022, 2, 25, 2, tzinfo=UTC), "no complete"),
        # Airflow would plan these: it ignores the DAG's start and end dates in a backfill
        (datetime(2022, 2, 28, tzinfo=UTC), datetime(2022, 3, 3, tzinfo=UTC), "2022-03-02T00:00Z"),
        (datetime(2021, 12, 30, tzinfo=UTC), datetime(2022, 1, 2, tzinfo=UTC), "2021-12-31T00:00Z"),
    ],
    ids=["between-two-interval-starts", "past-the-stream-end", "before-the-stream-start"],
)
def test_a_range_without_an_interval_the_scheduler_runs_is_an_error_naming_it(
    api, start, end, named
):
    client, pair = api
    dag_id = pair.stream.candles_dag_id
    before = backfill_ids(client, dag_id)
    with pytest.raises(NoIntervalsError) as empty:
        client.create_backfill(dag_id, start, end)
    message = str(empty.value)
    assert f"[{start.isoformat()}, {end.isoformat()})" in message and named in message
    assert "\n" not in message
    assert backfill_ids(client, dag_id) == before


class DependsOnPastScheduler:
    """The scheduler's part, played through the REST API by a thread: it starts the open
    backfill's queued runs one at a time in the order of their intervals and marks each
    successful, but only once the interval before it has a successful run (what the candles
    DAG's ``depends_on_past`` is for: each run sees the one before it); a backfill with none
    queued or running is completed (the scheduler's ``completed_at``). Airflow itself would
    start the run after a hole, against the latest earlier run that exists (its
    ``PrevDagrunDep`` with catch-up off), so the hole's interval would run last; this one
    holds there, so a hole the client leaves is a stall the test sees."""

    def __init__(self, client: AirflowClient, dag_id: str, first: datetime) -> None:
        self.client, self.dag_id, self.first = client, dag_id, first
        self.ran: list[datetime] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> DependsOnPastScheduler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            active = self.client.active_backfill(self.dag_id)
            if active is not None:
                self._step(active)

    def _step(self, active: dict) -> None:
        runs = self.client.dag_runs(self.dag_id, logical_date_gte=_iso(self.first))
        succeeded = {
            datetime.fromisoformat(r.logical_date or "") for r in runs if r.state == "success"
        }
        queued = sorted(
            (r for r in runs if r.state == "queued" and r.run_type == "backfill"),
            key=lambda r: r.logical_date or "",
        )
        if not queued:
            if not any(r.state == "running" for r in runs):
                self.client.request("PUT", f"/api/v2/backfills/{active['id']}/cancel")
            return
        moment = datetime.fromisoformat(queued[0].logical_date or "")
        if moment == self.first or moment - DAY in succeeded:
            self.client.request(
                "PATCH", _run_path(self.dag_id, queued[0].run_id), {"state": "success"}
            )
            self.ran.append(moment)


def test_a_hole_in_a_backfill_is_filled_before_the_runs_after_it(api, caplog):
    """A creation that fails part-way (SQLite refusing a write) can leave an interval without
    a run while later ones are queued; the wait fills it at once, so every interval succeeds,
    in order."""
    client, pair = api
    dag_id = pair.stream.candles_dag_id
    first = datetime(2022, 1, 10, tzinfo=UTC)
    days = [first + i * DAY for i in range(4)]
    backfill = client.create_backfill(dag_id, first, first + 4 * DAY)
    (hole,) = [r for r in client.dag_runs(dag_id) if r.logical_date == _iso(days[1])]
    client.request("DELETE", _run_path(dag_id, hole.run_id))
    caplog.set_level(logging.INFO, logger="candlecast")

    with DependsOnPastScheduler(client, dag_id, first) as scheduler:
        runs = client.wait_for_backfill(backfill, timeout=300)

    assert sorted((r.logical_date, r.state) for r in runs) == [(_iso(d), "success") for d in days]
    assert scheduler.ran == days
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("no runs for 2022-01-11T00:00Z that its open runs will reach" in m for m in said), (
        said
    )
    assert all(r.levelno < logging.WARNING for r in caplog.records)
