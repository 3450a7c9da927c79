"""News of a stream, shared by every worker process of the service.

``POST /refresh`` reaches one worker; the others learn of it here: a small JSON file under the
data directory counts announcements per stream key, rewritten atomically under a lock. A
worker compares the counts with those it has loaded before it answers (one ``stat`` per
request while nothing changed), so no worker answers from older data than the stores held
when an announcement was acknowledged.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path


class Announcements:
    """Announcement counts per stream key, in ``<home>/serving/announcements.json``."""

    def __init__(self, home: Path) -> None:
        self.path = home / "serving" / "announcements.json"
        self._identity: tuple[int, int, int] | None = None
        self._counts: dict[str, int] = {}

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

    def record(self, key: str) -> int:
        """Count one announcement for ``key``; returns its new count."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / ".announcements.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                counts = json.loads(self.path.read_text()) if self.path.exists() else {}
            except ValueError:
                counts = {}
            counts[key] = int(counts.get(key, 0)) + 1
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(counts, sort_keys=True))
            tmp.replace(self.path)
        return int(counts[key])
