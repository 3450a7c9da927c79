"""What a backfill will do with the runs its range already has: a pure decision over the
intervals Airflow plans (its dry run) and the DAG's runs with a logical date in the range.

What a logical date means: the start of the run's data interval, for the scheduler's runs and
for backfills' (the DAGs' ``CronDataIntervalTimetable``). Airflow gives a manual run triggered
*with* a logical date the interval that *ends* there, so such a run holds the logical date of
the next interval: the scheduler or a backfill can then never give that interval a run (a 409
"Unique constraint violation" for a trigger, a silently skipped interval for a backfill). A
manual run without a logical date (the UI's Trigger button, ``AirflowClient.trigger``) holds
none and works on the latest complete interval, beside any run that interval has.

So an existing run in a backfill's range is:

- *kept*: it succeeded and Airflow does not run it again (``reprocess='failed'``);
- *rerun*: Airflow runs it again (it failed, or ``reprocess='completed'``);
- a *collision*, an error naming it: it holds a logical date for another interval (a manual
  run with a logical date), it is still queued or running (the backfill would skip it and
  report nothing about it), or it failed and the reprocess behaviour keeps it.

Airflow 3.2 plans a backfill's intervals without regard to the DAG's start and end dates (the
stream's configured ``start`` and ``end``, where its data begins and stops), which the
scheduler and a manual run keep to: an interval starting before the start or at the end or
later is refused too, named.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

log = logging.getLogger(__name__)

#: DAG run states after which nothing more happens to a run.
FINISHED = frozenset({"success", "failed"})


class ExistingRun(Protocol):
    """What the decision reads of a DAG run (``airflow_api.DagRun``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def run_type(self) -> str: ...
    @property
    def logical_date(self) -> str | None: ...
    @property
    def data_interval_start(self) -> str | None: ...
    @property
    def data_interval_end(self) -> str | None: ...


class RunCollisionError(RuntimeError):
    """A backfill's interval has a run the backfill may not replace or wait for (the message
    names the run, its state and what to do)."""


class NoIntervalsError(ValueError):
    """No complete interval of the DAG's schedule starts in a backfill's range (named), or
    some start outside the DAG's start and end dates (named, with those dates)."""


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill of ``dag_id`` over ``span`` will do: run ``planned`` (logical dates,
    ``rerun`` among them: the ids of existing runs it runs again), and keep ``kept``, the ids
    of the successful runs its range already has."""

    dag_id: str
    span: str
    planned: list[datetime]
    kept: list[str]
    rerun: list[str]


def plan_backfill(
    dag_id: str,
    span: str,
    planned: Iterable[str],
    existing: Iterable[ExistingRun],
    reprocess: str,
    dag_dates: tuple[str | None, str | None] = (None, None),
) -> BackfillPlan:
    """The backfill's plan, given Airflow's dry run (``planned`` logical dates), the DAG's
    runs whose logical date is in the range ``span`` (as text, for messages) and the DAG's
    start and end dates (None: unbounded).

    Raises:
        RunCollisionError: a run in the range is one the backfill cannot replace (the first,
            named with its state).
        NoIntervalsError: nothing is planned and no run is kept: no complete interval of the
            schedule starts in the range; or planned intervals start outside ``dag_dates``.
    """
    dates = sorted(_moment(date) for date in planned)
    _check_dates(dag_id, span, dates, dag_dates)
    kept: list[str] = []
    rerun: list[str] = []
    for run in sorted(existing, key=lambda r: r.logical_date or ""):
        _check(dag_id, run, reprocess, dates)
        (rerun if _moment(run.logical_date) in dates else kept).append(run.run_id)
    if not dates and not kept:
        raise NoIntervalsError(
            f"backfill of {dag_id}: no complete interval of its schedule starts in {span} "
            "(an interval's run is backfilled by the date its interval starts, between the "
            "DAG's start and end dates, once the interval has ended)"
        )
    return BackfillPlan(dag_id, span, dates, kept, rerun)


def _check_dates(
    dag_id: str, span: str, dates: list[datetime], dag_dates: tuple[str | None, str | None]
) -> None:
    """Raise naming the planned intervals that start outside the DAG's dates."""
    first, last = (_moment(d) if d else None for d in dag_dates)
    outside = [d for d in dates if (first and d < first) or (last and d >= last)]
    if outside:
        raise NoIntervalsError(
            f"backfill of {dag_id}: {len(outside)} interval(s) in {span} start outside the "
            f"DAG's dates {dag_dates[0]} to {dag_dates[1]} (the stream's start and end), from "
            f"{outside[0]:%Y-%m-%dT%H:%M}Z to {outside[-1]:%Y-%m-%dT%H:%M}Z; the scheduler "
            "never runs them: backfill within those dates"
        )


def _check(dag_id: str, run: ExistingRun, reprocess: str, planned: list[datetime]) -> None:
    """Raise if the backfill cannot keep, rerun or wait for ``run``."""
    at = f"{_moment(run.logical_date):%Y-%m-%dT%H:%M}Z"
    name = f"{run.run_type} run {run.run_id} ({run.state})"
    if run.data_interval_start and _moment(run.data_interval_start) != _moment(run.logical_date):
        raise RunCollisionError(
            f"{dag_id}: logical date {at} is held by {name}, which works on the interval "
            f"{run.data_interval_start} to {run.data_interval_end} (a manual run triggered with "
            "a logical date gets the interval ending there); no run of the interval starting "
            f"at {at} can be created while it exists: delete it, then backfill again"
        )
    if run.state not in FINISHED:
        raise RunCollisionError(
            f"{dag_id}: the interval starting at {at} already has {name}, which a backfill "
            "would skip; wait until it has finished, then backfill again"
        )
    if run.state != "success" and _moment(run.logical_date) not in planned:
        raise RunCollisionError(
            f"{dag_id}: the interval starting at {at} has {name}, which reprocess "
            f"{reprocess!r} keeps; backfill with reprocess 'failed' to run it again"
        )


def log_plan(plan: BackfillPlan) -> None:
    """Say at INFO which existing runs the backfill keeps and which it runs again."""
    kept = ", ".join(plan.kept)
    if plan.kept and not plan.planned:
        log.info(
            "%s: nothing to backfill in %s: every interval already has a successful run, kept: %s",
            plan.dag_id,
            plan.span,
            kept,
        )
    elif plan.kept:
        log.info(
            "%s: %d interval(s) in %s already have a successful run, kept: %s",
            plan.dag_id,
            len(plan.kept),
            plan.span,
            kept,
        )
    if plan.rerun:
        log.info("%s: runs again: %s", plan.dag_id, ", ".join(plan.rerun))


def _moment(text: str | None) -> datetime:
    if text is None:
        raise ValueError("a run in a backfill's range has no logical date")
    return datetime.fromisoformat(text)
