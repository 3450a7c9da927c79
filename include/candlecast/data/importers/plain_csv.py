"""CSV candles with a header: open/high/low/close/volume, a time column
(:data:`~candlecast.data.importers._common.TIME_COLUMNS`), optionally ``quote_volume`` and
``trades``. The fallback for text files with a header no other format claims."""

from __future__ import annotations

import pandas as pd

from candlecast.data.importers._common import (
    Sample,
    candle_frame,
    csv_rows,
    find_time_column,
    is_float,
    string_table,
)

NAME = "csv"


def detect(sample: Sample) -> bool:
    """Several fields on the first line, and a header (a name that is not a number)."""
    fields = sample.fields
    return len(fields) > 1 and not all(is_float(cell) for cell in fields)


def read(sample: Sample) -> pd.DataFrame:
    raw = string_table(sample.path, csv_rows(sample.path, sample.text))
    return candle_frame(sample.path, raw, find_time_column(sample.path, raw))
