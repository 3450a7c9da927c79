"""Faults for the fail-safe tests and bench/bench_faults.py: a served world whose online store
is the real Redis behind a :class:`~candlecast.testing.faultproxy.FaultProxy` (hung or down on
command), and a forecast log filled up to the service's size cap by another writer (what a
full disk does to SQLite: "database or disk is full") and emptied again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import redis

from candlecast.testing.faultproxy import FaultProxy
from tests.serving import world

REDIS = ("127.0.0.1", 6379)
#: The service's forecast log cap in these worlds (CANDLECAST_SERVICE_FORECAST_LOG_MAX_MB):
#: far above what a bench's minutes of answers write, so only the filler reaches it.
LOG_CAP_MB = 64
FILLER = "filler"


def redis_world(root: Path, proxy: FaultProxy, db: int) -> dict[str, str]:
    """:func:`world.build` with Feast's online store in Redis database ``db`` (emptied first),
    reached through ``proxy``; the service the world starts caps its forecast log."""
    redis.Redis(*REDIS, db=db).flushdb()
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
        row = (FILLER, "x" * 4000, 0, 0, 0.0, None, None, 0, "service")  # a page a row
        while db.execute("PRAGMA page_count").fetchone()[0] * page < max_bytes:
            with db:
                db.executemany(f"INSERT INTO forecasts VALUES ({', '.join('?' * 9)})", [row] * 500)
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
