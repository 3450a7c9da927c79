"""The note of a train DAG run: what its promotion decided, so the grid says what happened.

An Airflow listener (registered by the candlecast plugin): when a train run finishes, the
scheduler (or ``dag.test()``) calls it with the run while it changes the run's state in its
session; the listener reads the ``promote`` task's decision from XCom and writes it as the
run's note in that session, which the caller commits. A task cannot set
its own run's note (the Task SDK has no call for it), hence the listener.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl

from candlecast.orchestration.links import stream_of_dag

log = logging.getLogger(__name__)

#: Airflow keeps notes of at most 1,000 characters.
NOTE_LIMIT = 1000


def _who(kind: Any, version: Any) -> str:
    return f"{kind} v{version}" if version else str(kind)


def decision_note(decision: dict[str, Any]) -> str:
    """One line for the grid: the outcome, who is champion, why (and whether only a dry run)."""
    outcome = str(decision.get("outcome"))
    if outcome == "promoted":
        text = f"promoted {_who(decision['challenger_kind'], decision['challenger_version'])}"
    elif outcome == "kept_champion":
        text = f"kept champion {_who(decision['champion_kind'], decision['champion_version'])}"
    elif outcome == "persistence":
        version = decision.get("champion_version")
        text = "persistence is champion" + (f" (v{version})" if version else "")
    else:
        text = outcome
    if decision.get("reason"):
        text += f": {decision['reason']}"
    if decision.get("dry_run"):
        text = f"dry run, nothing promoted: {text}"
    return text[:NOTE_LIMIT]


def _decision(session: Any, dag_run: Any) -> dict[str, Any] | None:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(
        run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids="promote", key="return_value"
    )
    row = session.scalars(query).first()
    value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, dict) else None


def _session(dag_run: Any) -> Any:
    """The session the caller (scheduler, ``dag.test()``) is changing the run in: the run's own,
    else the thread's scoped session, which both callers use and commit after the listener."""
    from airflow import settings
    from sqlalchemy.orm import object_session

    session: Any = settings.Session  # None until Airflow configured its ORM
    return object_session(dag_run) or session()


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """Note the promotion decision on a finished train run (never fails the caller)."""
    stream = stream_of_dag(dag_run.dag_id)
    if stream is None or dag_run.dag_id != stream.train_dag_id:
        return
    try:
        from airflow.models.dagrun import DagRun

        session = _session(dag_run)
        decision = _decision(session, dag_run)
        run = session.get(DagRun, dag_run.id)
        if decision is not None and run is not None:
            run.note = decision_note(decision)
    except Exception:  # a note is never worth failing the scheduler's loop
        log.exception("could not note the decision on %s", dag_run.run_id)


def listeners() -> list[Any]:
    """What the plugin registers as Airflow listeners: this module's hooks."""
    return [sys.modules[__name__]]
