"""News of a stream, shared by every worker process of the service.

``POST /refresh`` reaches one worker; the others learn of it here: a small JSON file under the
data directory counts announcements per stream key, rewritten atomically under a lock. A
worker compares the counts with those it has loaded before it answers (one ``stat`` per
request while nothing changed), so no worker answers from older data than the stores held
when an announcement was acknowledged.

A file that cannot be written (a full disk, a directory made read-only) takes nothing down:
the worker that got the news still reloads the stream, the others find it at their periodic
check (``CANDLECAST_SERVICE_REFRESH_SECONDS``); the failure is counted
(``candlecast_store_failures{store="announcements"}``), logged once where it starts and once
where it ends, said in ``/refresh``'s answer and on ``/health`` (:meth:`Announcements.problem`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path

from candlecast.serving import metrics

log = logging.getLogger(__name__)


class Announcements:
    """Announcement counts per stream key, in ``<home>/serving/announcements.json``."""

    def __init__(self, home: Path) -> None:
        self.path = home / "serving" / "announcements.json"
        self._identity: tuple[int, int, int] | None = None
        self._counts: dict[str, int] = {}
        self._failing: tuple[float, str] | None = None  # (since, why) while writes fail

    def counts(self) -> dict[str, int]:
        """The current counts (re-read only when the file was replaced)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self._counts
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        # A replacement within the file system's timestamp tick can reuse the inode number
        # with the same size: a file written in the last seconds is always read again.
        recent = time.time_ns() - stat.st_mtime_ns < 2_000_000_000
        if identity != self._identity or recent:
            try:
                self._counts = {
                    str(k): int(v) for k, v in json.loads(self.path.read_text()).items()
                }
            except (OSError, ValueError):
                return self._counts  # replaced while read: the next call reads it again
            self._identity = identity
        return self._counts

    def record(self, key: str) -> int | None:
        """Count one announcement for ``key``; returns its new count, or None when the file
        could not be written (counted, logged once and said by :meth:`problem`)."""
        try:
            count = self._write(key)
        except OSError as exc:
            self._failed(exc)
            return None
        if self._failing is not None:
            log.warning(
                "announcements: %s written again after %.0f s",
                self.path,
                time.time() - self._failing[0],
            )
            self._failing = None
        return count

    def problem(self) -> str | None:
        """Why announcements are not passed on to the other workers now (None while they are)."""
        if self._failing is None:
            return None
        since, why = self._failing
        return (
            f"announcements not shared with the other workers for {time.time() - since:.0f} s "
            f"({why}); they find news at their periodic check"
        )

    def _write(self, key: str) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / ".announcements.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                counts = json.loads(self.path.read_text()) if self.path.exists() else {}
            except ValueError:
                counts = {}
            counts[key] = int(counts.get(key, 0)) + 1
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(counts, sort_keys=True))
                tmp.replace(self.path)
            except OSError:
                tmp.unlink(missing_ok=True)  # a half-written file would hold a full disk's space
                raise
        return int(counts[key])

    def _failed(self, exc: OSError) -> None:
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        metrics.STORE_FAILURES.labels(
            store="announcements", outcome=metrics.failure_outcome(exc)
        ).inc()
        if self._failing is None:
            self._failing = (time.time(), why)
            log.error("announcements: %s: %s; other workers refresh periodically", self.path, why)
