"""Kraken's downloadable OHLCVT files (support.kraken.com, "Downloadable historical OHLCVT
data"): no header; unix seconds, open, high, low, close, volume, trade count. Minutes
without trades are absent (completeness counts them as missing; they are no error)."""

from __future__ import annotations

import pandas as pd

from candlecast.data.importers._common import Sample, candle_frame, csv_rows

NAME = "kraken"
_FIELDS = 7
_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "trades"]


def detect(sample: Sample) -> bool:
    """Seven numbers, the first whole unix seconds."""
    return sample.numeric_fields(_FIELDS) and _unix_seconds(sample.fields[0])


def _unix_seconds(cell: str) -> bool:
    return cell.isdigit() and 10**8 <= int(cell) < 10**11


def read(sample: Sample) -> pd.DataFrame:
    rows = csv_rows(sample.path, sample.text, width=_FIELDS)
    return candle_frame(sample.path, pd.DataFrame(rows, columns=_COLUMNS, dtype=object), "ts")
