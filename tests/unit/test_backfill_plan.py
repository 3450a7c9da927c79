"""The backfill plan's decision, table by table: what each existing run in the range means
for a backfill (kept, run again, or a collision naming it), and an empty range."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from candlecast.cli.backfill_plan import NoIntervalsError, RunCollisionError, plan_backfill

DAY1, DAY2 = "2022-02-01T00:00:00Z", "2022-02-02T00:00:00Z"


@dataclass(frozen=True)
class Run:
    run_id: str
    state: str
    logical_date: str
    data_interval_start: str | None
    data_interval_end: str | None = None
    run_type: str = "backfill"


def of_interval(run_id: str, state: str, day: str) -> Run:
    """A run of the interval that starts at its logical date (the scheduler's, a backfill's)."""
    return Run(run_id, state, day, day)


@pytest.mark.parametrize(
    ("run", "planned", "reprocess", "kept", "rerun"),
    [
        (of_interval("ok", "success", DAY1), [DAY2], "failed", ["ok"], []),
        (of_interval("bad", "failed", DAY1), [DAY1, DAY2], "failed", [], ["bad"]),
        (of_interval("ok", "success", DAY1), [DAY1, DAY2], "completed", [], ["ok"]),
    ],
    ids=["success-kept", "failed-rerun", "completed-rerun"],
)
def test_finished_runs_of_their_interval_are_kept_or_run_again(
    run, planned, reprocess, kept, rerun
):
    plan = plan_backfill("d", "[span)", planned, [run], reprocess)
    assert (plan.kept, plan.rerun, len(plan.planned)) == (kept, rerun, len(planned))


@pytest.mark.parametrize(
    ("run", "planned", "reprocess", "named"),
    [
        # a manual run triggered at DAY2: Airflow's interval DAY1..DAY2, DAY2's date held
        (Run("manual__x", "success", DAY2, DAY1, DAY2, "manual"), [], "failed", "held by"),
        (Run("manual__x", "failed", DAY2, DAY1, DAY2, "manual"), [DAY2], "failed", "held by"),
        (of_interval("open", "running", DAY1), [DAY2], "failed", "wait until"),
        (of_interval("open", "queued", DAY1), [DAY2], "completed", "wait until"),
        (of_interval("bad", "failed", DAY1), [DAY2], "none", "reprocess 'none' keeps"),
    ],
    ids=["foreign-success", "foreign-failed", "running", "queued", "failed-kept"],
)
def test_a_run_the_backfill_cannot_replace_is_a_one_line_error_naming_it(
    run, planned, reprocess, named
):
    with pytest.raises(RunCollisionError) as collided:
        plan_backfill("d", "[span)", planned, [run], reprocess)
    message = str(collided.value)
    assert f"{run.run_id} ({run.state})" in message and named in message
    assert "\n" not in message


def test_nothing_planned_and_nothing_kept_names_the_range():
    with pytest.raises(NoIntervalsError, match=r"d: no complete interval .* in \[a, b\)"):
        plan_backfill("d", "[a, b)", [], [], "failed")


def test_nothing_planned_with_every_interval_kept_is_a_plan_that_runs_nothing():
    plan = plan_backfill("d", "[a, b)", [], [of_interval("ok", "success", DAY1)], "failed")
    assert (plan.planned, plan.kept) == ([], ["ok"])


@pytest.mark.parametrize(
    ("dag_dates", "named"),
    [((DAY2, None), "2022-02-01T00:00Z"), ((None, DAY2), "2022-02-02T00:00Z")],
    ids=["before-the-start", "at-the-end"],
)
def test_intervals_outside_the_dags_dates_are_named(dag_dates, named):
    with pytest.raises(NoIntervalsError, match=rf"1 interval\(s\) .* from {named} to {named}"):
        plan_backfill("d", "[a, b)", [DAY1, DAY2], [], "failed", dag_dates)
    assert plan_backfill("d", "[a, b)", [DAY1], [], "failed", (DAY1, DAY2)).planned
