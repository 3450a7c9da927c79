"""The note of a train DAG run: what its promotion decided, so the grid says what happened.

An Airflow listener (registered by the candlecast plugin): when a train run finishes, the
scheduler (or ``dag.test()``) calls it with the run, still in its database session; it reads
the ``promote`` task's decision from XCom and writes it as the run's note. A task cannot set
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

_OUTCOMES = {
    "promoted": "promoted {challenger_kind} v{challenger_version}",
    "kept_champion": "kept champion {champion_kind} v{champion_version}",
    "persistence": "persistence is champion (v{champion_version})",
}


def decision_note(decision: dict[str, Any]) -> str:
    """One line for the grid: the outcome, who is champion, why (and whether only a dry run)."""
    template = _OUTCOMES.get(str(decision.get("outcome")), "{outcome}")
    text = template.format(**decision) + f": {decision.get('reason', '')}".rstrip(": ")
    if decision.get("dry_run"):
        text = f"dry run, nothing promoted; would have {text}"
    return text[:NOTE_LIMIT]


def _decision(dag_run: Any) -> dict[str, Any] | None:
    from airflow.models.xcom import XComModel
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return None
    query = XComModel.get_many(
        run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids="promote", key="return_value"
    )
    row = session.scalars(query).first()
    value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, dict) else None


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """Note the promotion decision on a finished train run (never fails the caller)."""
    stream = stream_of_dag(dag_run.dag_id)
    if stream is None or dag_run.dag_id != stream.train_dag_id:
        return
    try:
        decision = _decision(dag_run)
        if decision is not None:
            dag_run.note = decision_note(decision)
    except Exception:  # a note is never worth failing the scheduler's loop
        log.exception("could not note the decision on %s", dag_run.run_id)


def listeners() -> list[Any]:
    """What the plugin registers as Airflow listeners: this module's hooks."""
    return [sys.modules[__name__]]
