"""The forecast log: every served forecast, recorded without slowing ``/predict``.

:func:`record` only appends the answer's few fields to an in-memory queue (a ``deque``
append: no lock, no I/O, no parsing); a daemon thread per process flushes the queue every
:data:`FLUSH_INTERVAL_S` (a quarter second, start to start: what a kill -9 loses is what
was queued since the last commit) into one SQLite table under the data directory
(``$CANDLECAST_HOME/forecasts/forecast_log.db``, WAL mode, so service workers in several
processes and a reading monitor share it). The thread keeps one connection open (the schema
checked once), writes a tick's rows with one INSERT statement and commits with
``synchronous=NORMAL``: in WAL mode a commit is then written to the WAL file without an fsync,
which survives a crash of the process (kill -9) but not a power loss or an OS crash, where
the last commits before it may be lost. If the writer falls behind by
:data:`MAX_PENDING` rows, new forecasts are dropped and counted rather than letting memory
grow or the request wait. A failed flush (a full disk, an unwritable directory, the size cap
``CANDLECAST_SERVICE_FORECAST_LOG_MAX_MB``) keeps its rows for the next tick, is counted and
logged once, and is said on ``/health`` and ``/readyz`` (:meth:`ForecastLog.problem`).

Each row says which (target, horizon) it forecasts (``target_key``, :data:`candlecast.
targets.MAIN` for the next candle's return, all the service logs); the platform also logs its
forecasts of every other configured target (:mod:`candlecast.monitoring.target_scoring`). A
log written before that column existed gets it on first open, its rows read as the main
target's.

Monitoring reads the log with :func:`read_forecasts` (one target's rows, the main one unless
told) and joins it with realized outcomes (:mod:`candlecast.monitoring.performance`,
:mod:`candlecast.monitoring.targets`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.serving import metrics
from candlecast.serving.options import ServiceOptions
from candlecast.settings import Settings, get_settings, read_settings
from candlecast.targets import MAIN

log = logging.getLogger(__name__)

#: Seconds between the starts of two flushes of a process's queue. A kill -9 loses what was
#: queued since the last commit: at most this plus one write. Measured by
#: ``bench/bench_faults.py --kills 5 --clients 8`` (one worker, a shared 2-core machine): the
#: loss window was 0.27 to 1.66 s (median 0.91 s, 570 to 720 answers/s around the kills)
#: when each tick opened the log anew and inserted row by row, the writer thread waiting for
#: the GIL at each row's step (thousands of waits per write, no disk read) until writes of
#: 1,000 to 3,000 rows took up to 2.7 s; with one connection and one statement a tick it is
#: 0.04 to 0.25 s (median 0.09 s, 390 to 530 answers/s; in a traced run a write took 7 ms
#: at the median, 88 ms at the 99th percentile, and the ticks kept their 0.25 s).
FLUSH_INTERVAL_S = 0.25
#: Queued rows beyond which new forecasts are dropped (and counted) instead of queued.
MAX_PENDING = 100_000
COLUMNS = [
    "stream",
    "model_version",
    "feature_ts",
    "target_ts",
    "predicted",
    "lower",
    "upper",
    "served_at",
    "source",
    "target_key",
]
#: Who made a logged forecast: the service answering a client, the platform forecasting
#: every materialized candle itself with the model in force (:mod:`candlecast.monitoring.
#: scoring`), or the same with a losing challenger in the shadow (issue 16).
SERVICE, PLATFORM, SHADOW = "service", "platform", "shadow"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS forecasts (
    stream TEXT NOT NULL,
    model_version TEXT NOT NULL,
    feature_ts INTEGER NOT NULL,
    target_ts INTEGER NOT NULL,
    predicted REAL NOT NULL,
    lower REAL,
    upper REAL,
    served_at INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'service',
    target_key TEXT NOT NULL DEFAULT '{MAIN}'
);
CREATE INDEX IF NOT EXISTS forecasts_stream_time ON forecasts (stream, feature_ts);
"""
#: The platform forecasts each candle once per target and model version (a re-run adds
#: nothing).
_PLATFORM_INDEX = """
CREATE UNIQUE INDEX IF NOT EXISTS forecasts_platform_once_per_target
ON forecasts (stream, target_key, model_version, feature_ts) WHERE source = 'platform';
CREATE UNIQUE INDEX IF NOT EXISTS forecasts_shadow_once_per_target
ON forecasts (stream, target_key, model_version, feature_ts) WHERE source = 'shadow';
"""
#: The indexes of a log from before ``target_key``: unique per version alone, they would drop
#: a second target's row of the same version number. Dropped before the column is added, so
#: a migration cut short is done again whole at the next open.
_OLD_INDEXES = """
DROP INDEX IF EXISTS forecasts_platform_once;
DROP INDEX IF EXISTS forecasts_shadow_once;
"""
_INSERT_HEAD = f"INSERT INTO forecasts ({', '.join(COLUMNS)}) VALUES "
_INSERT = _INSERT_HEAD + f"({', '.join('?' * len(COLUMNS))})"
#: Rows written by one INSERT statement of the writer (fewer where SQLite allows fewer
#: parameters): a tick's rows in one statement, the backlog after an outage in a few.
_ROWS_PER_INSERT = 1000


def log_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).paths.home / "forecasts" / "forecast_log.db"


class ForecastLog:
    """A buffered writer of served forecasts into the SQLite table at ``path``.

    A write that fails (a full disk, a directory that became unwritable, a log at its size
    cap ``max_bytes``) never reaches the request: its rows wait, converted once, for the next
    tick, up to ``max_pending`` rows in all, beyond which answers are dropped from the log
    and counted. The failure is counted per tick (``candlecast_store_failures``), logged once
    where it starts and once where it ends, and said by :meth:`problem` (``/health``,
    ``/readyz``). The writer's connection is opened on the first write and kept (opened
    anew after a failed write, for another ``path`` or in a forked process).
    """

    def __init__(
        self,
        path: Path,
        flush_interval: float = FLUSH_INTERVAL_S,
        max_pending: int = MAX_PENDING,
        max_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.dropped = 0
        self.written = 0
        self._counted_drops = 0
        self._pending: deque[tuple[float, Any, Any, Any, Any, Any, Any]] = deque()
        self._unwritten: list[tuple[Any, ...]] = []  # rows a failed write left, in order
        self._failing: tuple[float, str] | None = None  # (since, why)
        self._db: sqlite3.Connection | None = None  # the writer's own, opened once
        self._db_for: tuple[int, Path] | None = None  # (process, path) it was opened for
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="forecast-log", daemon=True)
        self._thread.start()

    def record(self, body: dict[str, Any]) -> None:
        """Queue one ``/predict`` answer (:func:`candlecast.serving.snapshot.answer`)."""
        if len(self._pending) + len(self._unwritten) >= self.max_pending:
            self.dropped += 1
            return
        interval = body.get("interval") or {}
        self._pending.append(
            (
                time.time(),
                body["stream"],
                body["model"]["version"],
                body["feature_timestamp"],
                body["forecast_for"],
                body["predicted_return"],
                interval.get("return"),
            )
        )

    def flush(self) -> int:
        """Write every queued forecast now (one transaction); returns how many."""
        with self._flushing:
            rows = self._unwritten
            while self._pending:
                rows.append(_row(self._pending.popleft()))
            self._unwritten = []
            if not rows:
                return 0
            try:
                db = self._connection()
                with db:
                    _insert(db, rows)
            except (sqlite3.Error, OSError) as exc:
                self._unwritten = rows
                self._disconnect()  # opened afresh at the next try (the file may be elsewhere)
                self._failed(exc)
                return 0
            self.written += len(rows)
            self._recovered()
            return len(rows)

    def _connection(self) -> sqlite3.Connection:
        """The writer's connection: opened, and the schema checked, once (not per tick), and
        again only after a failed write or in a forked process."""
        here = (os.getpid(), self.path)
        if self._db is None or self._db_for != here:
            self._disconnect()
            # flushed from this thread or another (close, a test), one at a time; no statement
            # cache: each tick's INSERT has its own length (_insert)
            db = _connect(self.path, self.max_bytes, check_same_thread=False, cached_statements=0)
            db.execute("PRAGMA synchronous=NORMAL")  # no fsync per commit: see FLUSH_INTERVAL_S
            self._db, self._db_for = db, here
        return self._db

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None and self._db_for is not None and self._db_for[0] == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                db.close()
        elif db is not None:  # opened before a fork: never used, nor closed, here (SQLite)
            _FORKED.append(db)

    def problem(self) -> str | None:
        """Why forecasts are not being logged now (None while they are)."""
        failing = self._failing
        if failing is None:
            return None
        since, why = failing
        waiting = len(self._unwritten) + len(self._pending)
        return (
            f"forecast log not written for {time.time() - since:.0f} s ({why}); "
            f"{waiting} forecasts waiting, {self.dropped} dropped"
        )

    def _failed(self, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        outcome = metrics.failure_outcome(exc)
        metrics.STORE_FAILURES.labels(store="forecast_log", outcome=outcome).inc()
        if self._failing is None:
            self._failing = (time.time(), why)
            log.error("forecast log: %s: %s; forecasts wait in memory", self.path, why)

    def _recovered(self) -> None:
        if self._failing is not None:
            log.warning(
                "forecast log: writing again after %.0f s (%d forecasts dropped)",
                time.time() - self._failing[0],
                self.dropped,
            )
            self._failing = None

    def close(self) -> None:
        """Stop the writer thread after a last flush."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()
        with self._flushing:
            self._disconnect()

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(next_wait(started, time.monotonic(), self.flush_interval)):
            started = time.monotonic()
            try:
                self.flush()
                self._count_drops()
            except Exception:  # the writer must outlive any one bad row
                log.exception("forecast log: flush failed")

    def _count_drops(self) -> None:
        """Publish the drops since the last tick (counted here, not on the request path)."""
        dropped = self.dropped
        if dropped > self._counted_drops:
            metrics.forecasts_unlogged(dropped - self._counted_drops)
            self._counted_drops = dropped


def next_wait(started: float, now: float, interval: float) -> float:
    """Seconds to wait before the next flush, which started ``started`` (monotonic): the ticks
    keep their cadence, so a slow write (a loaded disk) does not push the next one back and
    a crash loses at most one interval plus one write of answers."""
    return max(0.0, started + interval - now)


def _insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with one statement (one ``sqlite3_step``) per :data:`_ROWS_PER_INSERT`
    rows, not one per row as ``executemany`` does: each step lets go of the GIL, and with the
    request handlers busy, taking it back is a wait of its own. Under bench/bench_faults.py's
    8 clients, ``executemany`` of 1,000 to 3,000 rows took up to 2.7 s, 0.2 s of it on the
    CPU and no disk read, the rest in about 10,000 waits of the writer thread; the writes fell
    behind and each grew larger."""
    width = len(COLUMNS)
    most = max(1, min(_ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    values = f"({', '.join('?' * width)})"
    for start in range(0, len(rows), most):
        chunk = rows[start : start + most]
        db.execute(
            _INSERT_HEAD + ", ".join([values] * len(chunk)), [v for row in chunk for v in row]
        )


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _row(queued: tuple[float, Any, Any, Any, Any, Any, Any]) -> tuple[Any, ...]:
    served, stream, version, feature_at, target_at, predicted, bounds = queued
    lower, upper = (float(bounds[0]), float(bounds[1])) if bounds else (None, None)
    return (
        str(stream),
        str(version),
        _ms(feature_at),
        _ms(target_at),
        float(predicted),
        lower,
        upper,
        int(served * 1000),
        SERVICE,
        MAIN,
    )


def _connect(path: Path, max_bytes: int | None = None, **options: Any) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, **options)
    if max_bytes is not None:  # a write that would grow the file past it fails as "full"
        page = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(forecasts)")}
    if "source" not in columns:  # a log written before the platform forecast itself
        db.execute("ALTER TABLE forecasts ADD COLUMN source TEXT NOT NULL DEFAULT 'service'")
    if "target_key" not in columns:  # a log written before other targets were logged
        db.executescript(_OLD_INDEXES)
        db.execute(f"ALTER TABLE forecasts ADD COLUMN target_key TEXT NOT NULL DEFAULT '{MAIN}'")
    db.executescript(_PLATFORM_INDEX)
    return db


def write_platform(rows: pd.DataFrame, settings: Settings | None = None) -> int:
    """Log the platform's own forecasts (columns of :data:`COLUMNS`; ``source`` is
    :data:`PLATFORM` unless given, or :data:`SHADOW`; ``target_key`` :data:`MAIN` unless
    given); a row already logged for the same source, stream, target, model version and
    feature time is kept as it was. Returns how many rows were new."""
    if rows.empty:
        return 0
    values = [
        (
            str(r.stream),
            str(r.model_version),
            int(r.feature_ts),
            int(r.target_ts),
            float(r.predicted),
            None if pd.isna(r.lower) else float(r.lower),
            None if pd.isna(r.upper) else float(r.upper),
            int(r.served_at),
            str(getattr(r, "source", PLATFORM)),
            str(getattr(r, "target_key", MAIN)),
        )
        for r in rows.itertuples(index=False)
    ]
    with _connect(log_path(settings)) as db:
        before = db.total_changes
        db.executemany(_INSERT.replace("INSERT", "INSERT OR IGNORE", 1), values)
        return db.total_changes - before


_FORKED: list[sqlite3.Connection] = []  # writers' connections inherited by a fork, kept open
_process_log: tuple[int, ForecastLog] | None = None
_process_lock = threading.Lock()


def process_log(settings: Settings | None = None) -> ForecastLog:
    """This process's writer (started on first use; a forked worker starts its own)."""
    global _process_log
    current = _process_log
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _process_lock:
        if _process_log is None or _process_log[0] != os.getpid():
            cap = read_settings(ServiceOptions).forecast_log_max_mb
            max_bytes = None if cap is None else int(cap * 1024 * 1024)
            writer = ForecastLog(log_path(settings), max_bytes=max_bytes)
            atexit.register(writer.close)
            _process_log = (os.getpid(), writer)
        return _process_log[1]


def problem() -> str | None:
    """Why this process's forecast log is not being written (None while it is)."""
    current = _process_log
    if current is None or current[0] != os.getpid():
        return None
    return current[1].problem()


def record(body: dict[str, Any]) -> None:
    """Record a served forecast (the answer of ``/predict``); never blocks, never raises."""
    try:
        process_log().record(body)
    except Exception:  # a malformed answer must not fail the request that served it
        log.exception("forecast log: answer not recorded")


def read_forecasts(
    stream: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    settings: Settings | None = None,
    path: Path | None = None,
    target_key: str = MAIN,
) -> pd.DataFrame:
    """Logged forecasts of a stream (key) and target (the next candle's return unless told)
    with ``start_ms <= feature_ts < end_ms``, oldest first, in :data:`COLUMNS`; empty when
    nothing was logged."""
    path = path or log_path(settings)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})
    query = (
        f"SELECT {', '.join(COLUMNS)} FROM forecasts "
        "WHERE stream = ? AND target_key = ? AND feature_ts >= ? AND feature_ts < ?"
    )
    start = start_ms if start_ms is not None else -(2**62)
    params = (stream, target_key, start, end_ms or 2**62)
    with _connect(path) as db:
        frame = pd.read_sql_query(query + " ORDER BY feature_ts, served_at", db, params=params)
    return frame.astype({c: _dtype(c) for c in COLUMNS})


def logged_streams(settings: Settings | None = None, path: Path | None = None) -> list[str]:
    """The stream keys that have logged forecasts."""
    path = path or log_path(settings)
    if not path.exists():
        return []
    with _connect(path) as db:
        return [row[0] for row in db.execute("SELECT DISTINCT stream FROM forecasts ORDER BY 1")]


def _dtype(column: str) -> str:
    if column in ("stream", "model_version", "source", "target_key"):
        return "object"
    return "int64" if column.endswith("_ts") or column == "served_at" else "float64"
