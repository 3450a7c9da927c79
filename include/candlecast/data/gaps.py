"""Gaps: candles missing from a stored series, found and reported, never invented."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.timeframes import ms_to_iso, timeframe_ms


@dataclass(frozen=True)
class Gap:
    """Candles opening in ``[start_ms, end_ms)`` are missing."""

    start_ms: int
    end_ms: int
    missing: int

    def describe(self) -> str:
        first, last = ms_to_iso(self.start_ms), ms_to_iso(self.end_ms)
        return f"{self.missing} candles missing from {first} to {last}"


def find_gaps(ts: np.ndarray | pd.Series, timeframe: str) -> list[Gap]:
    """Holes in sorted, unique candle open times on the timeframe grid."""
    step = timeframe_ms(timeframe)
    times = np.asarray(ts, dtype=np.int64)
    if len(times) < 2:
        return []
    jumps = np.diff(times)
    holes = np.flatnonzero(jumps > step)
    return [Gap(int(times[i] + step), int(times[i + 1]), int(jumps[i] // step - 1)) for i in holes]


def summarize(gaps: list[Gap]) -> dict[str, int]:
    return {"gaps": len(gaps), "missing_candles": sum(g.missing for g in gaps)}


@dataclass(frozen=True)
class Completeness:
    """How many candles a span should hold and how many it holds."""

    expected: int
    present: int

    @property
    def missing(self) -> int:
        return max(self.expected - self.present, 0)

    @property
    def missing_share(self) -> float:
        return self.missing / self.expected if self.expected else 0.0

    def describe(self) -> str:
        return f"{self.missing_share:.1%} missing ({self.missing} of {self.expected} candles)"


def completeness(
    ts: np.ndarray | pd.Series,
    timeframe: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Completeness:
    """Completeness of unique candle open times over ``[start_ms, end_ms)``; an open bound is
    the first candle (start) or the one after the last (end)."""
    step = timeframe_ms(timeframe)
    times = np.unique(np.asarray(ts, dtype=np.int64))
    if start_ms is None or end_ms is None:
        if not len(times):
            return Completeness(0, 0)
        start_ms = int(times[0]) if start_ms is None else start_ms
        end_ms = int(times[-1]) + step if end_ms is None else end_ms
    first = -(-start_ms // step) * step
    expected = max(0, -(-(end_ms - first) // step))
    inside = times[(times >= start_ms) & (times < end_ms)]
    return Completeness(expected, len(inside))
