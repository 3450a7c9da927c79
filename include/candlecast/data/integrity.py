"""What new candles may do to stored ones: add to them, never change them silently, and never
come from the future.

* **Overlaps.** A batch is compared value by value with the validated candles it overlaps.
  Identical rows are a no-op (nothing is rewritten, so files stay byte-identical). A row that
  differs is a conflict: the batch is quarantined with a report of the differing values
  (timestamp, column, stored, new) and nothing stored changes, unless the caller asks to
  overwrite; then the stored rows it replaces are kept in the quarantine folder
  (``replaced.parquet``) with the command that puts them back.
* **The future.** A candle that closes after now cannot have happened: the batch is rejected
  naming the first such candle, and kept in the quarantine.

Callers hold the stores' locks (:func:`candlecast.data.store.locked`) from the comparison to
the write, so a concurrent writer cannot slip a change in between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.data.schema import FLAGS
from candlecast.data.store import PartitionedTable
from candlecast.errors import PermanentError
from candlecast.timeframes import ms_to_iso, timeframe_ms

log = logging.getLogger(__name__)

#: Values closer than this (relative) are the same value: a file may print fewer digits
#: than the float the exchange gave, and a re-import must not count that as a change.
RTOL = 1e-9
#: Differing timestamps a message lists (the quarantine's report has them all).
SHOWN = 3


class OverlapConflictError(PermanentError):
    """A batch would change stored, validated candles; ``overlap`` has the differences and
    ``quarantine`` the folder the batch and the report were kept in."""

    def __init__(self, message: str, overlap: Overlap, quarantine: Path) -> None:
        super().__init__(message)
        self.overlap = overlap
        self.quarantine = quarantine


class FutureCandleError(PermanentError, ValueError):
    """A batch holds candles that close after now; the message names the first."""


@dataclass(frozen=True)
class Overlap:
    """How a batch relates to the stored rows of the same timestamps.

    Attributes:
        fresh: batch rows whose timestamp is not stored.
        same: timestamps whose stored row the batch repeats (within :data:`RTOL`).
        changed: batch rows whose stored row differs.
        replaced: the stored rows of ``changed``'s timestamps.
        differences: one row per differing value: ``ts``, ``column``, ``stored``, ``new``.
        kept_in: the quarantine folder holding the replaced rows (after an overwrite).
    """

    fresh: pd.DataFrame
    same: np.ndarray
    changed: pd.DataFrame
    replaced: pd.DataFrame
    differences: pd.DataFrame
    kept_in: Path | None = None

    @property
    def conflicts(self) -> int:
        return len(self.changed)

    def describe(self, limit: int = SHOWN) -> str:
        """The first differing timestamps with their stored and new values, one line."""
        parts = []
        for ts, rows in list(self.differences.groupby("ts", sort=True))[:limit]:
            values = ", ".join(
                f"{r.column} stored {r.stored:.12g} new {r.new:.12g}" for r in rows.itertuples()
            )
            parts.append(f"{ms_to_iso(int(ts))} ({values})")
        more = " ..." if self.conflicts > limit else ""
        return "; ".join(parts) + more


def compare(batch: pd.DataFrame, stored: pd.DataFrame, key: str = "ts") -> Overlap:
    """Compare ``batch`` with the ``stored`` rows (any superset of the overlap) on the value
    columns both have; NaN equals NaN."""
    if stored.empty or batch.empty:
        empty = batch.iloc[0:0]
        return Overlap(batch, np.empty(0, np.int64), empty, stored.iloc[0:0], _diffs([]))
    # flags are validation's view of a row in its batch's context, not the candle's values
    columns = [c for c in batch.columns if c not in (key, FLAGS) and c in stored.columns]
    old = stored.drop_duplicates(key, keep="last").set_index(key)
    known = batch[key].isin(old.index).to_numpy()
    ours = batch[known]
    theirs = old.loc[ours[key].to_numpy()]
    differs = np.zeros(len(ours), dtype=bool)
    found = []
    for column in columns:
        new = pd.to_numeric(ours[column], errors="coerce").to_numpy(dtype=float)
        was = pd.to_numeric(theirs[column], errors="coerce").to_numpy(dtype=float)
        same = np.isclose(new, was, rtol=RTOL, atol=0.0) | (np.isnan(new) & np.isnan(was))
        for i in np.flatnonzero(~same):
            found.append((int(ours[key].iloc[i]), column, float(was[i]), float(new[i])))
        differs |= ~same
    return Overlap(
        fresh=batch[~known],
        same=ours[key].to_numpy(dtype=np.int64)[~differs],
        changed=ours[differs],
        replaced=theirs[differs].reset_index(),
        differences=_diffs(found),
    )


def _diffs(rows: list[tuple[int, str, float, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ts", "column", "stored", "new"])
    return frame.astype({"ts": "int64", "stored": "float64", "new": "float64"})


def future_candles(ts: pd.Series | np.ndarray, timeframe: str, now_ms: int) -> np.ndarray:
    """Open times of the candles that close after ``now_ms`` (sorted)."""
    times = np.asarray(ts, dtype=np.int64)
    return np.sort(times[times + timeframe_ms(timeframe) > now_ms])


def future_message(label: str, ahead: np.ndarray, timeframe: str, now_ms: int) -> str:
    first = int(ahead[0])
    return (
        f"{label}: {len(ahead)} candle(s) close after now ({ms_to_iso(now_ms)}); the first "
        f"opens {ms_to_iso(first)} and closes {ms_to_iso(first + timeframe_ms(timeframe))}. "
        "A candle from the future is a wrong clock or a wrong file: nothing was stored"
    )


def keep(folder: Path, summary: str, **frames: pd.DataFrame) -> Path:
    """Write ``frames`` (``name.parquet``) and ``summary.txt`` into a quarantine folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "summary.txt").write_text(summary + "\n")
    return folder


def conflict_message(label: str, overlap: Overlap, folder: Path) -> str:
    return (
        f"{label}: {overlap.conflicts} candle(s) differ from the validated ones stored "
        f"({len(overlap.same)} identical, {len(overlap.fresh)} new); nothing was stored. "
        f"First differences: {overlap.describe()}. Batch and all differences kept in {folder} "
        "(differences.parquet); to replace the stored candles anyway, import with --overwrite "
        "(overwrite=True)"
    )


def undo_note(folder: Path, command: str) -> str:
    return (
        f"stored candles replaced by this batch are kept in {folder / 'replaced.parquet'}; "
        f"to undo: {command} --file {folder / 'replaced.parquet'} --overwrite"
    )


def admit(
    batch: pd.DataFrame,
    validated: PartitionedTable,
    *,
    overwrite: bool,
    folder: Path,
    label: str,
    undo: str,
    compared: pd.DataFrame | None = None,
) -> Overlap:
    """Decide what of ``batch`` may be written, given the validated candles it overlaps.

    ``compared`` is the batch as the validated store would hold it (repaired), when that
    differs from ``batch``. The caller holds ``validated``'s lock until it has written.

    Raises:
        OverlapConflictError: some rows differ from stored ones and ``overwrite`` is False;
            the batch and the differences are kept in ``folder``.
    """
    compared = batch if compared is None else compared
    if compared.empty:
        return compare(compared, compared.iloc[0:0])
    first, last = int(compared["ts"].min()), int(compared["ts"].max())
    overlap = compare(compared, validated.read(first, last + 1))
    if not overlap.conflicts:
        return overlap
    if not overwrite:
        message = conflict_message(label, overlap, folder)
        keep(folder, message, batch=batch, differences=overlap.differences)
        log.warning("%s", message)
        raise OverlapConflictError(message, overlap, folder)
    folder = _unused(folder)
    note = f"{label}: overwrote {overlap.conflicts} validated candle(s); " + undo_note(folder, undo)
    keep(folder, note, replaced=overlap.replaced, differences=overlap.differences)
    log.warning("%s", note)
    return replace(overlap, kept_in=folder)


def _unused(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``-3``... where an earlier overwrite kept its rows."""
    candidate, n = folder, 1
    while (candidate / "replaced.parquet").exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate
