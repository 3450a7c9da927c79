"""A small client of Airflow's REST API (v2), enough to drive the scheduler from the CLI, the
demo and the tests: log in, unpause DAGs, create backfills, list and wait for DAG runs.

No Airflow import: only HTTP (urllib), so it works against any Airflow 3 API server. Errors
name what failed: the request and the server's answer, or the failed run and task with a link
to the task's log and the log's last lines. What a logical date means (the start of a run's
interval), and what a backfill does with the runs its range already has, is stated once, in
``candlecast.cli.backfill_plan``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from candlecast.cli.backfill_plan import (
    FINISHED,
    NoIntervalsError,
    RunCollisionError,
    log_plan,
    plan_backfill,
)

__all__ = [
    "AirflowApiError",
    "AirflowClient",
    "BackfillShortfallError",
    "DagRun",
    "DagRunFailedError",
    "NoIntervalsError",
    "RunCollisionError",
]

log = logging.getLogger(__name__)

#: Retries of a request the server failed (5xx) or did not answer.
RETRIES = 4
#: Log levels worth showing when a task failed.
SEVERE = frozenset({"warning", "error", "critical"})
#: Items per page (Airflow's default ``[api] maximum_page_limit``).
PAGE = 100
#: Keys ``create_backfill`` adds to Airflow's answer: the logical dates the backfill must run,
#: the request that created it (to create the missing runs again), and the ids of the
#: successful runs its range already had, which it keeps.
EXPECTED, REQUEST, KEPT = "candlecast_expected", "candlecast_request", "candlecast_kept"
#: Times a backfill that finished short of its intervals is created again for the missing ones.
BACKFILL_REPAIRS = 2


class AirflowApiError(RuntimeError):
    """A request to the Airflow API failed (the message has the request and the answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DagRunFailedError(RuntimeError):
    """A DAG run ended failed (the message names the run, its failed tasks and their logs)."""


class BackfillShortfallError(RuntimeError):
    """A backfill finished without a successful run for every interval it was asked for (the
    message names the missing intervals)."""


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    state: str
    run_type: str
    logical_date: str | None
    data_interval_end: str | None
    data_interval_start: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DagRun:
        return cls(
            dag_id=body["dag_id"],
            run_id=body["dag_run_id"],
            state=body["state"],
            run_type=body.get("run_type", ""),
            logical_date=body.get("logical_date"),
            data_interval_end=body.get("data_interval_end"),
            data_interval_start=body.get("data_interval_start"),
        )


class AirflowClient:
    """An authenticated session with one Airflow API server.

    Args:
        base_url: ``http://127.0.0.1:8080``.
        username, password: a simple auth manager user (``candlecast airflow`` prints them).
        timeout: seconds per HTTP request (a loaded machine answers slowly; generous).
    """

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 120) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    # -- HTTP ------------------------------------------------------------------------------------

    def login(self) -> str:
        """A JWT from ``POST /auth/token``.

        Raises:
            AirflowApiError: wrong user or password (401), or the server did not answer.
        """
        body = self._call("POST", "/auth/token", self._credentials, auth=False)
        self._token = str(body["access_token"])
        return self._token

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """Call ``path`` (``/api/v2/...``) as the logged-in user; the decoded JSON answer."""
        if self._token is None:
            self.login()
        for attempt in range(RETRIES + 1):
            try:
                return self._call(method, path, body, query=query)
            except AirflowApiError as exc:
                # 401: the token expired; 5xx or no answer: SQLite busy under load, a server
                # restarting; a retry fixes those
                retry = exc.status is None or exc.status >= 500 or exc.status == 401
                if not retry or attempt == RETRIES:
                    raise
                if exc.status == 401:
                    self.login()
                else:
                    # INFO: a retry that succeeds is a healthy run (SQLite refuses a write
                    # while another connection writes); the last failure is raised
                    log.info("%s; retrying (%d of %d)", exc, attempt + 1, RETRIES)
                    time.sleep(2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        query: dict[str, Any] | None = None,
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None if body is None else json.dumps(body, default=str).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise AirflowApiError(
                f"{method} {url} -> {exc.code} {exc.reason}: {detail}", exc.code
            ) from None
        except OSError as exc:
            raise AirflowApiError(f"{method} {url} failed: {exc}") from None
        return json.loads(text) if text else None

    # -- DAGs ------------------------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's record, or None while the DAG processor has not parsed it."""
        try:
            return dict(self.request("GET", f"/api/v2/dags/{dag_id}"))
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise

    def reparse(self, dag_ids: Iterable[str]) -> str | None:
        """Ask the DAG processor to parse, at its next loop, the file that defines the first of
        ``dag_ids`` Airflow knows (``PUT /api/v2/parseDagFile``: a priority request, ahead of
        the file's ``min_file_process_interval``). Returns that DAG's id, or None when Airflow
        knows none of them (the file is parsed at its interval)."""
        for dag_id in dag_ids:
            try:
                details = self.request("GET", f"/api/v2/dags/{dag_id}/details")
            except AirflowApiError as exc:
                if exc.status == 404:
                    continue
                raise
            self.request("PUT", f"/api/v2/parseDagFile/{details['file_token']}")
            return dag_id
        return None

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v2/importErrors", limit=PAGE)["import_errors"])

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 900) -> None:
        """Wait until the DAG processor has parsed every DAG.

        Raises:
            AirflowApiError: a DAG file has an import error (its trace), or a DAG did not
                appear within ``timeout`` s.
        """
        missing = list(dag_ids)
        deadline = time.monotonic() + timeout
        while missing:
            missing = [dag_id for dag_id in missing if self.dag(dag_id) is None]
            if not missing:
                return
            errors = self.import_errors()
            if errors:
                first = errors[0]
                raise AirflowApiError(
                    f"DAG file {first.get('filename')} does not import, so "
                    f"{', '.join(missing)} cannot run:\n{first.get('stack_trace', '')[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"DAGs {', '.join(missing)} did not appear within {timeout:.0f} s: is the "
                    "dag-processor running (see its log) and are they in the pair config?"
                )
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        """Pause a DAG: the scheduler starts none of its queued runs (backfill runs included)
        until it is unpaused; running tasks finish."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    # -- backfills and runs ----------------------------------------------------------------------

    def create_backfill(
        self,
        dag_id: str,
        start: datetime,
        end: datetime,
        *,
        reprocess: str = "failed",
        max_active_runs: int = 1,
    ) -> dict[str, Any]:
        """A backfill of the runs whose data interval starts in ``[start, end)``, one at a time
        (``max_active_runs=1``: each interval's run sees the ones before it, and a backfill
        stays within the machine). ``reprocess``: ``failed`` (the default: runs that failed
        before run again, successful ones are kept), ``completed`` or ``none`` (refused by
        Airflow for DAGs with ``depends_on_past`` tasks, like the candles DAG).

        A logical date is the start of a run's interval, as for the scheduler's runs; what
        the range's existing runs mean for the backfill is ``backfill_plan``'s decision.
        Successful runs it keeps are logged at INFO and listed under ``KEPT``; when every
        interval has one, nothing is created (``id`` None) and ``wait_for_backfill`` returns
        no runs.

        Raises:
            NoIntervalsError: no complete interval of the DAG's schedule starts in the range,
                or some start outside the DAG's start and end dates (Airflow would run them).
            RunCollisionError: an interval has a run the backfill cannot replace or wait for:
                a manual run triggered with a logical date (it holds the date of another
                interval), a run still queued or running, or a failed run that ``reprocess``
                keeps (named, with its state).
            AirflowApiError: e.g. another backfill of the DAG is running (409).
        """
        if end <= start:
            raise ValueError(f"backfill of {dag_id}: end {end} is not after start {start}")
        body: dict[str, Any] = {
            "dag_id": dag_id,
            "from_date": start.isoformat(),
            # Airflow's range is inclusive of both logical dates (interval starts)
            "to_date": (end - timedelta(seconds=1)).isoformat(),
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess,
            "run_backwards": False,
        }
        # the intervals it must run, asked before creating: a creation that fails half-way
        # (SQLite busy: a 500 after some of its runs were committed, then a 409 on the retry)
        # leaves a backfill with fewer runs, which ``wait_for_backfill`` then completes
        planned = self.request("POST", "/api/v2/backfills/dry_run", body)["backfills"]
        dates = [str(b["logical_date"]) for b in planned if b.get("logical_date")]
        existing = self.dag_runs(
            dag_id, logical_date_gte=body["from_date"], logical_date_lte=body["to_date"]
        )
        resumed = self._resumed_backfill(body, existing)
        if resumed is not None:
            return resumed | {EXPECTED: sorted(dates), REQUEST: body, KEPT: []}
        span = f"[{start.isoformat()}, {end.isoformat()})"
        plan = plan_backfill(dag_id, span, dates, existing, reprocess, self._dag_dates(dag_id))
        log_plan(plan)
        added = {EXPECTED: sorted(dates), REQUEST: body, KEPT: plan.kept}
        if not plan.planned:  # a backfill with nothing to run would only look like work done
            return {"id": None, "dag_id": dag_id, **_range_of(body)} | added
        return self._post_backfill(body) | added

    def _dag_dates(self, dag_id: str) -> tuple[str | None, str | None]:
        """The DAG's start and end dates (None: unbounded)."""
        details = self.request("GET", f"/api/v2/dags/{dag_id}/details")
        return details.get("start_date"), details.get("end_date")

    def _resumed_backfill(
        self, body: dict[str, Any], existing: list[DagRun]
    ) -> dict[str, Any] | None:
        """The DAG's active backfill of the same range, when the range's open runs are its:
        created by a request that seemed to fail, or by an earlier session that was
        interrupted; the caller waits on that one."""
        if all(run.state in FINISHED for run in existing):
            return None
        active = self.active_backfill(body["dag_id"])
        if active is None or (active["from_date"], active["to_date"]) != _range(body):
            return None
        return active

    def _post_backfill(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a backfill; the DAG's active backfill of the same range when there is one."""
        try:
            return dict(self.request("POST", "/api/v2/backfills", body))
        except AirflowApiError as exc:
            # the same backfill already runs: created by a request that seemed to fail, or by
            # an earlier session that was interrupted; wait on that one
            active = self.active_backfill(body["dag_id"]) if exc.status == 409 else None
            if active is None or (active["from_date"], active["to_date"]) != _range(body):
                raise
            return active

    def active_backfill(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's backfill that has not completed yet (Airflow allows one), if any."""
        body = self.request("GET", "/api/v2/backfills", dag_id=dag_id, limit=PAGE)
        active = [b for b in body["backfills"] if b.get("completed_at") is None]
        return dict(active[-1]) if active else None

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/backfills/{backfill_id}"))

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> DagRun:
        """A manual run now, with ``conf`` checked against the DAG's params by Airflow.

        It has no logical date (``logical_date: null``), so it never collides with another
        run: the DAGs work on their latest complete interval (as of now, capped at the
        stream's end), beside the run the scheduler or a backfill gave that interval, which is
        kept. There is deliberately no way to pass a logical date: Airflow gives a manual run
        triggered at date D the interval *ending* at D, while D is the logical date of the
        interval *starting* there, so the run would take that interval's date from its
        scheduled or backfilled run (a 409 "Unique constraint violation" when it has one, or
        no run for it ever after). To run a past interval, backfill it (``create_backfill``).

        Raises:
            AirflowApiError: e.g. a param the DAG's schema refuses (400, the reason named).
        """
        body = {"logical_date": None, "conf": conf or {}}
        return DagRun.parse(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body))

    def dag_run(self, dag_id: str, run_id: str) -> DagRun:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}"
        return DagRun.parse(self.request("GET", path))

    def wait_for_run(self, run: DagRun, timeout: float) -> DagRun:
        """Wait until one run has finished.

        Raises:
            DagRunFailedError: it failed (its failed tasks and their logs named).
            TimeoutError: not finished within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while run.state not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{run.dag_id} {run.run_id} not done within {timeout:.0f} s")
            time.sleep(3)
            run = self.dag_run(run.dag_id, run.run_id)
        if run.state == "failed":
            raise self.failure(run)
        return run

    def dag_runs(self, dag_id: str, **filters: str) -> list[DagRun]:
        """Every run of the DAG (those ``filters`` select, e.g. ``logical_date_gte``), in the
        order they were due (``run_after``)."""
        runs: list[DagRun] = []
        while True:  # pages of the server's maximum size
            body = self.request(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns",
                limit=PAGE,
                offset=len(runs),
                order_by="run_after",
                **filters,
            )
            runs += [DagRun.parse(run) for run in body["dag_runs"]]
            if not body["dag_runs"] or len(runs) >= body["total_entries"]:
                return runs

    def queued_asset_events(self, dag_id: str) -> int:
        """How many asset events wait to trigger a run of the DAG."""
        try:
            body = self.request("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents")
        except AirflowApiError as exc:
            if exc.status == 404:  # none queued
                return 0
            raise
        return int(body.get("total_entries", len(body.get("queued_events", []))))

    def task_instances(self, run: DagRun) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{run.dag_id}/dagRuns/{urllib.parse.quote(run.run_id)}/taskInstances"
        return list(self.request("GET", path, limit=PAGE)["task_instances"])

    def task_log_tail(self, run: DagRun, task: dict[str, Any], lines: int = 8) -> str:
        """What a task's log says went wrong: its warnings and errors (with the exception's
        type and message), else its last lines; '' when the log cannot be read."""
        path = (
            f"/api/v2/dags/{run.dag_id}/dagRuns/{urllib.parse.quote(run.run_id)}/taskInstances/"
            f"{task['task_id']}/logs/{max(1, int(task.get('try_number') or 1))}"
        )
        try:
            body = self.request("GET", path, map_index=task.get("map_index", -1), full_content=True)
        except AirflowApiError:
            return ""
        events = [e for e in (body or {}).get("content", []) if isinstance(e, dict)]
        bad = [e for e in events if str(e.get("level", "")).lower() in SEVERE]
        return "\n".join(_log_line(event) for event in (bad or events)[-lines:])

    def failure(self, run: DagRun) -> DagRunFailedError:
        """The error for a failed run: its failed tasks, each with its log's URL and tail."""
        failed = [
            t for t in self.task_instances(run) if t["state"] in ("failed", "upstream_failed")
        ]
        parts = [f"DAG run {run.dag_id} {run.run_id} failed"]
        for task in failed:
            index = task.get("map_index", -1)
            name = task["task_id"] + (f"[{index}]" if index is not None and index >= 0 else "")
            url = f"{self.base_url}/dags/{run.dag_id}/runs/{run.run_id}/tasks/{task['task_id']}"
            parts.append(f"task {name}: {task['state']} (try {task.get('try_number')}); log: {url}")
            if task["state"] == "failed":
                tail = self.task_log_tail(run, task)
                parts.extend(f"    {line}" for line in tail.splitlines())
        return DagRunFailedError("\n".join(parts))

    def _report_finished(
        self, runs: list[DagRun], seen: set[str], on_run: Callable[[DagRun], None] | None
    ) -> None:
        """Hand each newly finished run to ``on_run`` once; raise naming the first failed one.

        Raises:
            DagRunFailedError: a run failed (its failed tasks and their logs named).
        """
        for run in runs:
            if run.state in FINISHED and run.run_id not in seen:
                seen.add(run.run_id)
                if on_run:
                    on_run(run)
                if run.state == "failed":
                    raise self.failure(run)

    def wait_for_backfill(
        self,
        backfill: dict[str, Any],
        timeout: float,
        on_run: Callable[[DagRun], None] | None = None,
    ) -> list[DagRun]:
        """Wait until every run of a backfill has finished, and every interval it was created
        for (``create_backfill``) has a successful run: intervals left without one (a creation
        that failed half-way) get a backfill of their own, at most ``BACKFILL_REPAIRS`` times.
        Intervals without a run that none of its open runs will reach (a hole before a run
        that waits to start, or any when none is open) are filled at once (``_refill``), so
        no run goes ahead of the interval before it and nothing waits on Airflow's clean-up.

        A backfill that had nothing to run (every interval kept its successful run, see
        ``create_backfill``) returns no runs at once.

        Raises:
            DagRunFailedError: a run failed (named, with its failed tasks and their logs).
            BackfillShortfallError: intervals still have no successful run (named).
            TimeoutError: not done within ``timeout`` s (the runs still open are named).
        """
        dag_id, backfill_id = backfill["dag_id"], backfill["id"]
        if backfill_id is None:
            return []
        deadline, seen = time.monotonic() + timeout, set[str]()
        repairs = 0
        while True:
            done = self.backfill(backfill_id).get("completed_at") is not None
            every_run = self.dag_runs(dag_id)
            runs = [r for r in every_run if _in_backfill(r, backfill)]
            self._report_finished(runs, seen, on_run)
            holes = [] if done else _holes(backfill, every_run)
            if holes and repairs < BACKFILL_REPAIRS and REQUEST in backfill:
                refilled = self._created_again(
                    partial(self._refill, backfill, holes, deadline), deadline
                )
                if refilled is not None:
                    repairs += 1
                    backfill, backfill_id = refilled, refilled["id"]
                continue
            if done and all(run.state in FINISHED for run in runs):
                missing = _missing(backfill, every_run)
                if not missing:
                    if repairs:  # the outcome of the repairs below: nothing left to do
                        log.info(
                            "%s: every interval of the backfill has a successful run after "
                            "%d repair(s)",
                            dag_id,
                            repairs,
                        )
                    return runs
                if repairs == BACKFILL_REPAIRS or REQUEST not in backfill:
                    raise BackfillShortfallError(
                        f"backfill {backfill_id} of {dag_id} finished with no successful run "
                        f"for {len(missing)} interval(s): {', '.join(missing)}"
                    )
                repaired = self._created_again(partial(self._repair, backfill, missing), deadline)
                if repaired is not None:
                    repairs += 1
                    backfill, backfill_id = repaired, repaired["id"]
                continue
            if time.monotonic() > deadline:
                open_runs = [f"{r.run_id} ({r.state})" for r in runs if r.state not in FINISHED]
                raise TimeoutError(
                    f"backfill {backfill_id} of {dag_id} not done within {timeout:.0f} s; "
                    f"open: {', '.join(open_runs) or 'none created yet'}"
                )
            time.sleep(3)

    def _created_again(
        self, create: Callable[[], dict[str, Any]], deadline: float
    ) -> dict[str, Any] | None:
        """``create()``: a backfill created again by a repair; None when the API server failed
        it even after :meth:`request`'s retries (a 5xx or no answer: SQLite busy under load),
        so the wait checks the backfill again and the repair is retried until its deadline
        (a cancelled backfill whose new one was not created comes back as intervals without a
        run). A refusal (4xx), or a failure after the deadline, is raised."""
        try:
            return create()
        except AirflowApiError as exc:
            if (exc.status is not None and exc.status < 500) or time.monotonic() > deadline:
                raise
            # INFO: the next check retries it; past the deadline the failure is raised
            log.info("%s; the backfill is checked again and the repair retried", exc)
            time.sleep(3)
            return None

    def _repair(self, backfill: dict[str, Any], missing: list[str]) -> dict[str, Any]:
        """A new backfill of a finished one's range, for the intervals it left without a
        successful run (its ``reprocess`` keeps the runs that succeeded)."""
        # INFO, not a warning: the repair is the remedy, there is nothing for a user to do;
        # what it cannot fix is a BackfillShortfallError
        log.info(
            "backfill %s of %s finished without runs for %s (its creation failed part-way); "
            "creating them",
            backfill["id"],
            backfill["dag_id"],
            ", ".join(missing),
        )
        request = backfill[REQUEST]
        return self._post_backfill(request) | {EXPECTED: backfill[EXPECTED], REQUEST: request}

    def _refill(
        self, backfill: dict[str, Any], holes: list[str], deadline: float
    ) -> dict[str, Any]:
        """The backfill created again, for an open one with holes: its queued runs cancelled
        (Airflow fails them), its running ones waited for, then the same range backfilled with
        ``reprocess`` ``failed``: the runs that succeeded are kept; the holes and the
        cancelled runs get runs, in the order of their intervals.

        Airflow allows one open backfill per DAG and adds no run to one, so this is the only
        way to fill a hole before the runs after it: they would run without it (Airflow's
        ``depends_on_past`` looks at the latest earlier run that exists), cutting their
        warm-up, and the hole's interval would run last.

        Raises:
            DagRunFailedError: a run that was running when the backfill was cancelled failed.
            TimeoutError: its running runs did not finish before ``deadline``.
        """
        dag_id, backfill_id = backfill["dag_id"], backfill["id"]
        log.info(
            "backfill %s of %s has no runs for %s that its open runs will reach (its creation "
            "failed part-way); cancelling it and creating it again",
            backfill_id,
            dag_id,
            ", ".join(holes),
        )
        try:
            self.request("PUT", f"/api/v2/backfills/{backfill_id}/cancel")
        except AirflowApiError as exc:
            if exc.status != 409:  # 409: it completed meanwhile
                raise
        started: set[str] = set()
        while True:  # the runs it had started finish; its queued ones are failed
            runs = [r for r in self.dag_runs(dag_id) if _in_backfill(r, backfill)]
            running = [r for r in runs if r.state == "running"]
            started |= {r.run_id for r in running}
            if not running:
                # a run that failed on its own is an error, not one to run again quietly
                self._report_finished([r for r in runs if r.run_id in started], set(), None)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"backfill {backfill_id} of {dag_id} cancelled to fill its holes, but "
                    f"{', '.join(r.run_id for r in running)} did not finish"
                )
            time.sleep(3)
        request = backfill[REQUEST] | {"reprocess_behavior": "failed"}
        return self._post_backfill(request) | {
            EXPECTED: backfill[EXPECTED],
            REQUEST: backfill[REQUEST],
        }

    def wait_until_idle(
        self,
        dag_id: str,
        timeout: float,
        on_run: Callable[[DagRun], None] | None = None,
        min_runs: int = 1,
    ) -> list[DagRun]:
        """Wait until a DAG has at least ``min_runs`` finished runs, none queued or running, and
        no asset event waiting to trigger another (runs an upstream DAG's assets started).

        Raises:
            DagRunFailedError: a run failed.
            TimeoutError: not idle within ``timeout`` s.
        """
        deadline, seen = time.monotonic() + timeout, set[str]()
        while True:
            runs = self.dag_runs(dag_id)
            self._report_finished(runs, seen, on_run)
            finished = [r for r in runs if r.state in FINISHED]
            idle = len(finished) == len(runs) and not self.queued_asset_events(dag_id)
            if idle and len(finished) >= min_runs:
                return runs
            if time.monotonic() > deadline:
                states = ", ".join(f"{r.run_id} ({r.state})" for r in runs) or "no runs"
                raise TimeoutError(f"{dag_id} not idle within {timeout:.0f} s: {states}")
            time.sleep(3)


def _in_backfill(run: DagRun, backfill: dict[str, Any]) -> bool:
    """Whether a run belongs to the backfill's range (its logical date inside it)."""
    if run.run_type != "backfill" or run.logical_date is None:
        return False
    moment = datetime.fromisoformat(run.logical_date)
    first = datetime.fromisoformat(backfill["from_date"])
    return first <= moment <= datetime.fromisoformat(backfill["to_date"])


def _expected_and_existing(
    backfill: dict[str, Any], runs: list[DagRun], state: str | None = None
) -> tuple[list[datetime], set[datetime]]:
    """The logical dates a backfill was created for (in order), and those the runs have (only
    the runs in ``state``, when given)."""
    expected = [datetime.fromisoformat(d) for d in backfill.get(EXPECTED, [])]
    existing = {
        datetime.fromisoformat(r.logical_date)
        for r in runs
        if r.logical_date is not None and state in (None, r.state)
    }
    return expected, existing


def _missing(backfill: dict[str, Any], runs: list[DagRun]) -> list[str]:
    """The logical dates a backfill was created for that have no successful run."""
    expected, succeeded = _expected_and_existing(backfill, runs, state="success")
    return [f"{d:%Y-%m-%dT%H:%M}Z" for d in expected if d not in succeeded]


def _holes(backfill: dict[str, Any], runs: list[DagRun]) -> list[str]:
    """The logical dates an open backfill was created for that have no run at all and that
    nothing will reach: those before a queued run of it (a creation that failed part-way
    between them), or every one when none of its runs is queued or running (a creation that
    failed before its first run: Airflow completes such a backfill only after 2 minutes).
    A missing tail behind open runs is not one: the repair after completion creates it."""
    expected, have = _expected_and_existing(backfill, runs)
    mine = [r for r in runs if r.logical_date is not None and _in_backfill(r, backfill)]
    waiting = [datetime.fromisoformat(r.logical_date or "") for r in mine if r.state == "queued"]
    missing = [d for d in expected if d not in have]
    if any(r.state in ("queued", "running") for r in mine):
        missing = [d for d in missing if waiting and d < max(waiting)]
    return [f"{d:%Y-%m-%dT%H:%M}Z" for d in missing]


def _range(body: dict[str, Any]) -> tuple[str, str]:
    """A backfill request's range as the API reports it (UTC, ``Z``)."""
    return tuple(  # type: ignore[return-value]
        datetime.fromisoformat(body[key]).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for key in ("from_date", "to_date")
    )


def _range_of(body: dict[str, Any]) -> dict[str, str]:
    """A backfill request's ``from_date`` and ``to_date`` as the API reports them."""
    first, last = _range(body)
    return {"from_date": first, "to_date": last}


def _log_line(event: dict[str, Any]) -> str:
    """One structured log event as text; an exception as ``Type: message``."""
    details = [d for d in event.get("error_detail") or [] if isinstance(d, dict)]
    errors = [f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details[:1]]  # not causes
    return "\n".join([str(event.get("event", "")), *errors])
