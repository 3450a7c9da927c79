"""Derive a higher timeframe from stored candles (1m -> 5m -> 15m -> 1h -> 4h -> 1d).

A target candle covers the source candles whose open time falls in its bucket; buckets are
aligned to the target grid in UTC (``ts % timeframe_ms(target) == 0``, as the validation
suite's grid check expects). Only complete buckets are kept: a bucket with any constituent
candle missing (a gap, or the edges of the stored range) is left out, never invented.
"""

from __future__ import annotations

import logging

import pandas as pd

from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.errors import ResampleError
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

_AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def resample(candles: pd.DataFrame, source_tf: str, target_tf: str) -> pd.DataFrame:
    """Aggregate ``source_tf`` candles into complete ``target_tf`` candles.

    open is the first open, high the highest high, low the lowest low, close the last close
    and volume the sum of the bucket's candles. Returns :data:`CANDLE_COLUMNS` sorted by
    ``ts`` (the bucket's open time, unix ms).

    Raises:
        ValueError: a timeframe is not understood, the target is not a whole multiple of the
            source, or the candles are not clean stored candles of ``source_tf`` (missing
            columns, null values, duplicate or off-grid open times).
    """
    source_ms, target_ms = timeframe_ms(source_tf), timeframe_ms(target_tf)
    if target_ms % source_ms:
        raise ResampleError(
            f"cannot resample {source_tf} to {target_tf}: "
            f"the target must be a whole multiple of the source timeframe"
        )
    frame = _checked(candles, source_tf, source_ms)
    per_bucket = target_ms // source_ms
    frame = frame.sort_values("ts", kind="stable")
    buckets = frame["ts"] - frame["ts"] % target_ms
    grouped = frame.groupby(buckets, sort=True)
    out = grouped.agg(_AGGREGATION)
    complete = grouped.size() == per_bucket
    out = out[complete].rename_axis("ts").reset_index()
    out["ts"] = out["ts"].astype("int64")
    log.info(
        "resampled %d %s candles into %d %s candles (%d incomplete buckets left out)",
        len(frame),
        source_tf,
        len(out),
        target_tf,
        int((~complete).sum()),
    )
    return out[CANDLE_COLUMNS].astype({c: "float64" for c in CANDLE_COLUMNS[1:]})


def _checked(candles: pd.DataFrame, source_tf: str, source_ms: int) -> pd.DataFrame:
    """The candle columns, after checking the frame is fit to aggregate."""
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise ResampleError(f"cannot resample: missing columns {missing}")
    frame = candles[CANDLE_COLUMNS].reset_index(drop=True)
    nulls = int(frame.isna().sum().sum())
    if nulls:
        raise ResampleError(f"cannot resample: {nulls} null values; validate the candles first")
    frame = frame.astype({"ts": "int64"})
    off_grid = frame["ts"] % source_ms != 0
    if off_grid.any():
        first = int(frame.loc[off_grid, "ts"].iloc[0])
        raise ResampleError(
            f"cannot resample: {int(off_grid.sum())} candles off the {source_tf} grid "
            f"(first at ts {first})"
        )
    duplicated = frame["ts"].duplicated()
    if duplicated.any():
        first = int(frame.loc[duplicated, "ts"].iloc[0])
        raise ResampleError(
            f"cannot resample: {int(duplicated.sum())} duplicate open times (first at ts {first})"
        )
    return frame
