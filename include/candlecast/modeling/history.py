"""Every champion decision of a stream, in data time: which version served from which candle on.

MLflow's ``champion`` alias says who serves now; it keeps no past. Scoring every candle with the
model that served it, and monitoring an interval as of its end, need the past: this module keeps
it as one JSON line per committed decision in ``models/<stream>/decisions.jsonl``, appended when
the pipeline commits a gate decision (also when the gate keeps the champion: the decision's
training window is the reference that monitoring compares against) and when a person promotes
or rolls back.

Each line is stamped with the data time it holds from (``since``): the end of the training
window the decision was made on, or for a manual move the newest candle's close at that moment.
A forecast for a candle closing at ``t`` comes from the decision with the latest ``since <= t``,
so no forecast ever uses a model trained on data after its candle, backfills included. A gate
decision also names the challenger it judged when that challenger lost (``challengers``): the
platform forecasts the same candles with it in the shadow, point in time the same way (issue 16).
Lines written before that field existed read as having no challenger.

Every other configured target keeps the same kind of history in its own folder
(:func:`target_history_path`, ``models/<stream>/targets/<target key>/decisions.jsonl``),
written by target training; the functions here read and write either through ``path``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from candlecast.names import Stream
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import to_ms

FILE = "decisions.jsonl"


@dataclass(frozen=True)
class Decided:
    """One committed decision: ``version`` serves from ``since`` (data time) on."""

    since: datetime
    version: str
    kind: str
    #: The training window the decision was made on (monitoring's reference window).
    window_start: datetime
    window_end: datetime
    #: ``gate`` (the pipeline), ``promote`` or ``rollback`` (a person).
    how: str
    #: Whether the champion changed with this decision.
    changed: bool
    recorded_at: datetime
    #: The losing challenger versions of a gate decision, forecast in the shadow while it holds.
    challengers: tuple[str, ...] = ()

    def to_json(self) -> str:
        row = asdict(self)
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.isoformat()
        return json.dumps(row, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Decided:
        row = json.loads(line)
        for key in ("since", "window_start", "window_end", "recorded_at"):
            row[key] = datetime.fromisoformat(row[key])
        row["challengers"] = tuple(str(v) for v in row.get("challengers", ()))
        return cls(**row)


def history_path(stream: Stream, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).paths.models / stream.key / FILE


def target_history_path(stream: Stream, target_key: str, settings: Settings | None = None) -> Path:
    """The decision history of one of the stream's other targets (:mod:`.target_training`)."""
    return stream.target_dir((settings or get_settings()).paths.models, target_key) / FILE


def record(
    stream: Stream, decided: Decided, settings: Settings | None = None, path: Path | None = None
) -> None:
    """Append a decision to the stream's history, or to the one at ``path`` (one ``write`` of
    one line with ``O_APPEND``: never interleaved with another writer, and a crash leaves at
    most a cut last line, which :func:`read` skips)."""
    path = path or history_path(stream, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (decided.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def record_now(
    stream: Stream,
    since: datetime,
    version: str,
    kind: str,
    window: tuple[datetime, datetime],
    how: str,
    changed: bool,
    settings: Settings | None = None,
    challengers: Sequence[str] = (),
    path: Path | None = None,
) -> None:
    """Append a decision made now: ``version`` (a ``kind``) serves from ``since`` on, judged
    on the training ``window``; the ``challengers`` it beat are forecast in the shadow.
    ``path``: another history than the stream's main one (:func:`target_history_path`)."""
    shadows = tuple(str(v) for v in challengers if str(v) != version)
    decided = Decided(since, version, kind, window[0], window[1], how, changed, now(), shadows)
    record(stream, decided, settings, path)


def read(
    stream: Stream, settings: Settings | None = None, path: Path | None = None
) -> list[Decided]:
    """The stream's decisions (or those of the history at ``path``) in the order they were
    recorded (empty when none)."""
    path = path or history_path(stream, settings)
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(Decided.from_json(line))
        except (ValueError, TypeError, KeyError):
            continue  # a line cut by a crash
    return found


def as_of(history: Sequence[Decided], moment: datetime) -> Decided | None:
    """The decision in force at ``moment`` (data time): the latest ``since <= moment``; among
    decisions for the same moment, the one recorded last. None before the first."""
    valid = [d for d in history if d.since <= moment]
    if not valid:
        return None
    return max(enumerate(valid), key=lambda item: (item[1].since, item[0]))[1]


def decisions_at(history: Sequence[Decided], times_ms: np.ndarray) -> np.ndarray:
    """:func:`as_of` for many times at once (unix ms): the index in ``history`` of the
    decision in force at each, -1 before the first decision."""
    order = np.array(sorted(range(len(history)), key=lambda i: (history[i].since, i)), dtype=int)
    since = np.array([to_ms(history[i].since) for i in order], dtype=np.int64)
    found = np.searchsorted(since, np.asarray(times_ms, dtype=np.int64), side="right") - 1
    if not len(order):
        return np.full(len(found), -1, dtype=int)
    return np.where(found >= 0, order[np.maximum(found, 0)], -1)


def versions_at(history: Sequence[Decided], times_ms: np.ndarray) -> np.ndarray:
    """The version in force at each time (unix ms), '' before the first decision."""
    versions = np.array([d.version for d in history] + [""], dtype=object)
    return versions[decisions_at(history, times_ms)]  # -1 picks the trailing ''


def shadows_at(history: Sequence[Decided], times_ms: np.ndarray, version: str) -> np.ndarray:
    """Whether ``version`` is a shadow challenger of the decision in force at each time."""
    shadowed = np.array([version in d.challengers for d in history] + [False], dtype=bool)
    return shadowed[decisions_at(history, times_ms)]


def shadows_in_force(history: Sequence[Decided], start_ms: int, stop_ms: int) -> set[str]:
    """The shadow challengers of the decisions in force at some time of ``[start_ms,
    stop_ms)`` (unix ms)."""
    moments = [start_ms] + [t for t in (to_ms(d.since) for d in history) if start_ms < t < stop_ms]
    found = decisions_at(history, np.array(moments, dtype=np.int64))
    return {v for i in set(found.tolist()) if i >= 0 for v in history[i].challengers}


def versions_in_force(history: Sequence[Decided], start_ms: int, stop_ms: int) -> set[str]:
    """The versions in force at some time of ``[start_ms, stop_ms)`` (unix ms): the one at its
    start and the one from each later decision's moment (the version in force only changes
    there)."""
    moments = [start_ms] + [t for t in (to_ms(d.since) for d in history) if start_ms < t < stop_ms]
    return set(versions_at(history, np.array(moments, dtype=np.int64))) - {""}


def now() -> datetime:
    return datetime.now(UTC)
