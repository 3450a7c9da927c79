"""Faults for the fail-safe tests and bench/bench_faults.py: a served world whose online store
is the real Redis behind a :class:`~candlecast.testing.faultproxy.FaultProxy` (hung or down on
command), and a forecast log filled up to the service's size cap by another writer (what a
full disk does to SQLite: "database or disk is full") and emptied again."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import redis

from candlecast.testing.faultproxy import FaultProxy
from tests.serving import world

REDIS = ("127.0.0.1", 6379)
#: The service's forecast log cap in these worlds (CANDLECAST_SERVICE_FORECAST_LOG_MAX_MB):
#: far above what a bench's minutes of answers write, so only the filler reaches it.
LOG_CAP_MB = 64
FILLER = "filler"


class RedisServer:
    """A ``redis-server`` of the caller's own on a free port, without persistence: stopped for
    real (``SHUTDOWN NOSAVE``) and started again empty, as a Redis restart without persistence
    leaves it, without touching the machine's shared Redis."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "redis-server"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        args += ["no", "--dir", str(self.folder)]
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen([binary, *args], stdout=log, stderr=log)
        client = redis.Redis(*self.address, socket_timeout=5)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, (self.folder / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.1)

    def stop(self) -> None:
        """Shut it down (its data is gone: nothing is saved)."""
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: redis-server shuts down; with --save "" it saves nothing
        self.proc.wait(timeout=60)
        self.proc = None


def redis_world(
    root: Path, proxy: FaultProxy, db: int, server: tuple[str, int] = REDIS
) -> dict[str, str]:
    """:func:`world.build` with Feast's online store in database ``db`` (emptied first) of the
    Redis at ``server``, reached through ``proxy``; the service the world starts caps its
    forecast log."""
    redis.Redis(*server, db=db).flushdb()
    return world.build(root, redis_settings(proxy, db))


def redis_settings(proxy: FaultProxy, db: int) -> dict[str, str]:
    """The environment of :func:`redis_world` beyond :func:`world.environment`'s."""
    return {
        "CANDLECAST_ONLINE_STORE": "redis",
        "CANDLECAST_REDIS_URL": f"127.0.0.1:{proxy.port},db={db}",
        "CANDLECAST_SERVICE_FORECAST_LOG_MAX_MB": str(LOG_CAP_MB),
    }


def fill_log(path: Path, max_bytes: int = LOG_CAP_MB * 1024 * 1024) -> int:
    """Grow the forecast log at ``path`` to ``max_bytes`` with filler rows; returns its pages."""
    from candlecast.serving.forecast_log import _connect

    db = _connect(path)
    try:
        page = db.execute("PRAGMA page_size").fetchone()[0]
        filler = {"stream": FILLER, "model_version": "x" * 4000}  # a page a row
        row = (*filler.values(), 0, 0, 0.0, None, None, 0, "service")
        insert = (
            f"INSERT INTO forecasts ({', '.join(filler)}, feature_ts, target_ts, predicted, "
            f"lower, upper, served_at, source) VALUES ({', '.join('?' * len(row))})"
        )
        while db.execute("PRAGMA page_count").fetchone()[0] * page < max_bytes:
            with db:
                db.executemany(insert, [row] * 500)
        return int(db.execute("PRAGMA page_count").fetchone()[0])
    finally:
        db.close()


def clear_log(path: Path) -> None:
    """Delete the filler rows (their pages are free again: the capped writer fits)."""
    db = sqlite3.connect(path, timeout=30)
    try:
        with db:
            db.execute("DELETE FROM forecasts WHERE stream = ?", (FILLER,))
    finally:
        db.close()


def service_rows(path: Path) -> int:
    """Forecasts the service logged in the log at ``path`` (the filler rows left out; 0 before
    the log exists)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=30)
    try:
        query = "SELECT count(*) FROM forecasts WHERE source = 'service' AND stream != ?"
        return int(db.execute(query, (FILLER,)).fetchone()[0])
    finally:
        db.close()


def newest_service_row(path: Path, until_ms: int) -> int:
    """``served_at`` (ms) of the newest service forecast in the log at ``path`` served at or
    before ``until_ms`` (0 when there is none)."""
    db = sqlite3.connect(path, timeout=30)
    try:
        query = (
            "SELECT max(served_at) FROM forecasts "
            "WHERE source = 'service' AND stream != ? AND served_at <= ?"
        )
        return int(db.execute(query, (FILLER, until_ms)).fetchone()[0] or 0)
    finally:
        db.close()
