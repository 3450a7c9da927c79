"""Partitioned parquet tables: one file per UTC day, upserted by timestamp, written atomically.

Used for the raw candle store (as fetched), the validated store (what passed validation)
and the Feast offline feature source. Writing the same rows twice gives byte-identical files.

Safe against concurrent writers, across threads and processes: every read-modify-write
holds the table's file lock (``<root>/.lock``), so two writers upserting different rows of one
partition both keep theirs. Readers take no lock (a partition is replaced atomically, so they
see it before or after a write, never half of one).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from candlecast.errors import StoreError

_DAY_MS = 86_400_000
#: One lock object per lock file and process: the lock is reentrant per object and thread,
#: while two objects on one file (two ``flock`` descriptors) would block each other.
_LOCKS: dict[Path, FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> FileLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = FileLock(path)
        return lock


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A partition read through one open file: a writer may replace the path meanwhile (by
    rename), and reading it by name twice could mix the old file's footer with the new one's
    pages."""
    with path.open("rb") as handle:
        return pq.read_table(handle, columns=columns)


@contextmanager
def locked(*tables: PartitionedTable) -> Iterator[None]:
    """Hold the write locks of several tables, taken in path order (no lock-order deadlock
    between writers locking the same tables)."""
    with ExitStack() as stack:
        for table in sorted(set(tables), key=lambda t: str(t.root)):
            stack.enter_context(table.lock())
        yield


class PartitionedTable:
    """Rows keyed by an int64 unix-ms column, stored as ``<root>/<YYYY-MM-DD>.parquet``."""

    def __init__(self, root: Path, key: str = "ts") -> None:
        self.root = root
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartitionedTable) and (self.root, self.key) == (
            other.root,
            other.key,
        )

    def __hash__(self) -> int:
        return hash((self.root, self.key))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the table's write lock (reentrant): for a read-compare-write spanning calls."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.root.resolve() / ".lock"):
            yield

    def upsert(self, frame: pd.DataFrame) -> list[Path]:
        """Insert or replace rows by key; returns the partition files holding the rows (one
        the rows would leave unchanged is not rewritten)."""
        if frame.empty:
            return []
        if frame[self.key].duplicated().any():
            raise StoreError(f"{self.root}: batch has duplicate {self.key} values")
        days = frame[self.key] // _DAY_MS
        written = []
        with self.lock():
            for day, part in frame.groupby(days, sort=True):
                path = self._path(int(day))
                old = _read(path).to_pandas() if path.exists() else None
                if old is not None:
                    part = pd.concat([old[~old[self.key].isin(part[self.key])], part])
                part = part.sort_values(self.key).reset_index(drop=True)
                if old is None or not part.equals(old):
                    self._write(path, part)
                written.append(path)
        return written

    def delete(self, keys: np.ndarray | pd.Series | list[int]) -> list[Path]:
        """Remove the rows with these keys; returns the partition files changed (a partition
        left without rows is removed)."""
        wanted = pd.Series(np.asarray(keys, dtype=np.int64))
        changed = []
        with self.lock():
            for day, some in wanted.groupby(wanted // _DAY_MS, sort=True):
                path = self._path(int(day))
                if not path.exists():
                    continue
                old = _read(path).to_pandas()
                kept = old[~old[self.key].isin(some)].reset_index(drop=True)
                if len(kept) == len(old):
                    continue
                if kept.empty:
                    path.unlink()
                else:
                    self._write(path, kept)
                changed.append(path)
        return changed

    def read(self, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
        """Rows with ``start_ms <= key < end_ms`` (either bound may be open), sorted by key."""
        files = self.files(start_ms, end_ms)
        if not files:
            return pd.DataFrame()
        frame = pd.concat([_read(f).to_pandas() for f in files], ignore_index=True)
        if start_ms is not None:
            frame = frame[frame[self.key] >= start_ms]
        if end_ms is not None:
            frame = frame[frame[self.key] < end_ms]
        return frame.sort_values(self.key).reset_index(drop=True)

    def files(self, start_ms: int | None = None, end_ms: int | None = None) -> list[Path]:
        if not self.root.exists():
            return []
        first = None if start_ms is None else self._path(start_ms // _DAY_MS).name
        last = None if end_ms is None else self._path((end_ms - 1) // _DAY_MS).name
        return [
            f
            for f in sorted(self.root.glob("*.parquet"))
            if (first is None or f.name >= first) and (last is None or f.name <= last)
        ]

    def fingerprint(self, start_ms: int | None = None, end_ms: int | None = None) -> str:
        """Content version of the partitions covering a range: md5 over each file's name and
        md5, so the same data always names the same version (files are byte-stable)."""
        digest = hashlib.md5()
        for path in self.files(start_ms, end_ms):
            digest.update(f"{path.name}:{hashlib.md5(path.read_bytes()).hexdigest()}\n".encode())
        return digest.hexdigest()

    def keys(self, start_ms: int | None = None, end_ms: int | None = None) -> np.ndarray:
        """The stored keys of the partitions covering a range (only that column is read)."""
        files = self.files(start_ms, end_ms)
        if not files:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([_read(f, [self.key])[self.key].to_numpy() for f in files])

    def first_key(self) -> int | None:
        """The oldest key stored, or None when the table is empty."""
        files = self.files()
        if not files:
            return None
        return int(_read(files[0], [self.key])[self.key].to_numpy().min())

    def last_key(self) -> int | None:
        """The newest key stored, or None when the table is empty."""
        files = self.files()
        if not files:
            return None
        return int(_read(files[-1], [self.key])[self.key].to_numpy().max())

    def _path(self, day: int) -> Path:
        date = pd.Timestamp(day * _DAY_MS, unit="ms").strftime("%Y-%m-%d")
        return self.root / f"{date}.parquet"

    @staticmethod
    def _write(path: Path, frame: pd.DataFrame) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = frame.copy(deep=False)
        frame.attrs = {}  # only the rows decide the bytes (pandas writes attrs into the file)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
