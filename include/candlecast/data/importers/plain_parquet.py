"""Parquet candles: open/high/low/close/volume, a time column
(:data:`~candlecast.data.importers._common.TIME_COLUMNS`), optionally ``quote_volume`` and
``trades``."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from candlecast.data.importers._common import Sample, candle_frame, find_time_column, read_arrow

NAME = "parquet"


def detect(sample: Sample) -> bool:
    """Parquet magic bytes, or a parquet file name."""
    return sample.magic == "parquet" or sample.path.name.lower().endswith((".parquet", ".pq"))


def read(sample: Sample) -> pd.DataFrame:
    raw = read_arrow(sample.path, sample.payload, pq.read_table, "parquet")
    return candle_frame(sample.path, raw, find_time_column(sample.path, raw))
