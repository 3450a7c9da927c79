"""Partitioned parquet tables: one file per UTC day, upserted by timestamp, written atomically.

Used for the raw candle store (as fetched), the validated store (what passed validation)
and the Feast offline feature source. Writing the same rows twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from candlecast.errors import StoreError

_DAY_MS = 86_400_000


class PartitionedTable:
    """Rows keyed by an int64 unix-ms column, stored as ``<root>/<YYYY-MM-DD>.parquet``."""

    def __init__(self, root: Path, key: str = "ts") -> None:
        self.root = root
        self.key = key

    def upsert(self, frame: pd.DataFrame) -> list[Path]:
        """Insert or replace rows by key; returns the partition files written."""
        if frame.empty:
            return []
        if frame[self.key].duplicated().any():
            raise StoreError(f"{self.root}: batch has duplicate {self.key} values")
        days = frame[self.key] // _DAY_MS
        written = []
        for day, part in frame.groupby(days, sort=True):
            path = self._path(int(day))
            if path.exists():
                old = pq.read_table(path).to_pandas()
                part = pd.concat([old[~old[self.key].isin(part[self.key])], part])
            self._write(path, part.sort_values(self.key).reset_index(drop=True))
            written.append(path)
        return written

    def read(self, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
        """Rows with ``start_ms <= key < end_ms`` (either bound may be open), sorted by key."""
        files = self.files(start_ms, end_ms)
        if not files:
            return pd.DataFrame()
        frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
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
        return np.concatenate(
            [pq.read_table(f, columns=[self.key])[self.key].to_numpy() for f in files]
        )

    def last_key(self) -> int | None:
        """The newest key stored, or None when the table is empty."""
        files = self.files()
        if not files:
            return None
        return int(pq.read_table(files[-1], columns=[self.key])[self.key].to_numpy().max())

    def _path(self, day: int) -> Path:
        date = pd.Timestamp(day * _DAY_MS, unit="ms").strftime("%Y-%m-%d")
        return self.root / f"{date}.parquet"

    @staticmethod
    def _write(path: Path, frame: pd.DataFrame) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
