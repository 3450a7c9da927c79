"""A backfill whose creation failed part-way is completed by the client: a repair that
succeeds is logged at INFO with its outcome (nothing for a user to act on, so no warning),
and a shortfall it cannot fix is an error naming the intervals."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from candlecast.cli import airflow_api
from candlecast.cli.airflow_api import AirflowApiError, AirflowClient, BackfillShortfallError

DAG = "candles_binance_eth_btc_5m"
START = datetime(2018, 1, 28, tzinfo=UTC)
DAYS = [START + timedelta(days=i) for i in range(2)]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class PartialAirflow(AirflowClient):
    """An API whose first backfill creation commits only its first run (a 500 half-way, then
    the client's retry found it); later creations commit ``repairable`` runs each."""

    def __init__(self, repairable: int, failing: int = 0) -> None:
        super().__init__("http://airflow.invalid", "admin", "secret")
        self._token = "token"
        self.repairable = repairable
        self.failing = failing  # later creations first answered 500 (after every retry)
        self.backfills: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        if path == "/api/v2/backfills/dry_run":
            return {"backfills": [{"logical_date": _iso(day)} for day in DAYS]}
        if method == "POST" and path == "/api/v2/backfills":
            if self.backfills and self.failing:
                self.failing -= 1
                raise AirflowApiError(f"POST {path} -> 500 Internal Server Error", 500)
            return self._create(body)
        if path.startswith("/api/v2/backfills/"):
            return self.backfills[int(path.rsplit("/", 1)[1])]
        if path == f"/api/v2/dags/{DAG}/details":
            return {"start_date": _iso(START), "end_date": None}
        if path == f"/api/v2/dags/{DAG}/dagRuns":
            return {"dag_runs": self.runs, "total_entries": len(self.runs)}
        raise AssertionError(f"unexpected {method} {path}")

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        done = {run["logical_date"] for run in self.runs}
        todo = [_iso(day) for day in DAYS if _iso(day) not in done]
        for day in todo[: 1 if not self.backfills else self.repairable]:
            self.runs.append(_run(day))
        self.backfills.append(
            {
                "id": len(self.backfills),
                "dag_id": body["dag_id"],
                "from_date": _iso(datetime.fromisoformat(body["from_date"])),
                "to_date": _iso(datetime.fromisoformat(body["to_date"])),
                "completed_at": "2026-01-01T00:00:00Z",  # its runs finished at once
            }
        )
        return self.backfills[-1]


def _run(day: str) -> dict[str, Any]:
    return {
        "dag_id": DAG,
        "dag_run_id": f"backfill__{day}",
        "state": "success",
        "run_type": "backfill",
        "logical_date": day,
        "data_interval_end": None,
    }


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch):
    monkeypatch.setattr(airflow_api.time, "sleep", lambda seconds: None)


def test_a_repair_that_succeeds_says_so_at_info_without_a_warning(caplog):
    client = PartialAirflow(repairable=2)
    caplog.set_level(logging.DEBUG, logger=airflow_api.__name__)
    backfill = client.create_backfill(DAG, START, START + timedelta(days=2))
    runs = client.wait_for_backfill(backfill, timeout=60)
    assert sorted(r.logical_date or "" for r in runs) == [_iso(day) for day in DAYS]
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    creating, outcome = (r.getMessage() for r in caplog.records)
    assert "without runs for 2018-01-29T00:00Z" in creating
    assert outcome.endswith("every interval of the backfill has a successful run after 1 repair(s)")


def test_a_repair_the_api_server_fails_is_retried_at_the_next_check(caplog):
    # SQLite busy under load: the repair's creation answered 500 after every retry, twice
    client = PartialAirflow(repairable=2, failing=2)
    caplog.set_level(logging.DEBUG, logger=airflow_api.__name__)
    backfill = client.create_backfill(DAG, START, START + timedelta(days=2))
    runs = client.wait_for_backfill(backfill, timeout=60)
    assert sorted(r.logical_date or "" for r in runs) == [_iso(day) for day in DAYS]
    assert {r.levelname for r in caplog.records} == {"INFO"}
    retried = [r.getMessage() for r in caplog.records if "repair retried" in r.getMessage()]
    assert len(retried) == 2 and all("500" in line for line in retried)
    assert caplog.records[-1].getMessage().endswith("after 1 repair(s)")


def test_a_repair_failing_past_the_deadline_is_raised():
    client = PartialAirflow(repairable=2, failing=10**6)
    backfill = client.create_backfill(DAG, START, START + timedelta(days=2))
    with pytest.raises(AirflowApiError, match="500"):
        client.wait_for_backfill(backfill, timeout=0)


def test_a_repair_the_api_server_refuses_is_raised():
    class Refusing(PartialAirflow):
        def _create(self, body: dict[str, Any]) -> dict[str, Any]:
            if self.backfills:
                raise AirflowApiError("POST /api/v2/backfills -> 400 Bad Request", 400)
            return super()._create(body)

    client = Refusing(repairable=2)
    backfill = client.create_backfill(DAG, START, START + timedelta(days=2))
    with pytest.raises(AirflowApiError, match="400"):
        client.wait_for_backfill(backfill, timeout=60)


def test_a_shortfall_the_repairs_leave_is_an_error_naming_the_intervals(caplog):
    client = PartialAirflow(repairable=0)
    backfill = client.create_backfill(DAG, START, START + timedelta(days=2))
    with pytest.raises(BackfillShortfallError, match=r"1 interval\(s\): 2018-01-29T00:00Z"):
        client.wait_for_backfill(backfill, timeout=60)
    assert len(client.backfills) == 1 + airflow_api.BACKFILL_REPAIRS


def _at(day: int, state: str, run_type: str = "backfill") -> airflow_api.DagRun:
    moment = _iso(START + timedelta(days=day))
    return airflow_api.DagRun(DAG, f"{run_type}__{moment}", state, run_type, moment, None)


@pytest.mark.parametrize(
    ("runs", "holes"),
    [
        # a creation that failed part-way between two intervals: the later one waits
        ([_at(0, "running"), _at(2, "queued"), _at(3, "queued")], ["2018-01-29T00:00Z"]),
        ([_at(0, "queued"), _at(3, "queued")], ["2018-01-29T00:00Z", "2018-01-30T00:00Z"]),
        # the usual part-way creation, a missing tail: the backfill completes, then a repair
        ([_at(0, "success"), _at(1, "queued")], []),
        # a run after the hole already started: the repair after completion
        ([_at(0, "success"), _at(2, "running"), _at(3, "success")], []),
        # nothing open will reach them: a creation that failed before its first run, or after
        ([], ["2018-01-28T00:00Z", "2018-01-29T00:00Z", "2018-01-30T00:00Z", "2018-01-31T00:00Z"]),
        ([_at(0, "success"), _at(1, "success")], ["2018-01-30T00:00Z", "2018-01-31T00:00Z"]),
        # the interval has a run, of another kind: not a hole
        ([_at(0, "success"), _at(1, "success", "scheduled"), _at(2, "queued")], []),
    ],
    ids=["hole", "two-holes", "tail", "started-after", "none-made", "none-open", "other-kind"],
)
def test_holes_are_intervals_without_a_run_that_no_open_run_of_the_backfill_reaches(runs, holes):
    backfill = {
        "from_date": _iso(START),
        "to_date": _iso(START + timedelta(days=3)),
        airflow_api.EXPECTED: [_iso(START + timedelta(days=i)) for i in range(4)],
    }
    assert airflow_api._holes(backfill, runs) == holes
