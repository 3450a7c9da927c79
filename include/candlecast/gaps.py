"""Gaps: candles missing from a stored series, found and reported, never invented."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.timeframes import timeframe_ms


@dataclass(frozen=True)
class Gap:
    """Candles opening in ``[start_ms, end_ms)`` are missing."""

    start_ms: int
    end_ms: int
    missing: int

    def describe(self) -> str:
        first = pd.Timestamp(self.start_ms, unit="ms", tz="UTC").isoformat()
        last = pd.Timestamp(self.end_ms, unit="ms", tz="UTC").isoformat()
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
