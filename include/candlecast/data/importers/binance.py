"""Binance's public data dumps (data.binance.vision): kline CSV of 12 columns, no header
(futures dumps: a header ``open_time,...``), open time in ms or, in spot dumps since 2025, in
µs. The quote volume (8th column) and the number of trades (9th) are kept."""

from __future__ import annotations

import pandas as pd

from candlecast.data.importers._common import Sample, candle_frame, csv_rows
from candlecast.data.schema import CANDLE_COLUMNS

NAME = "binance"
_FIELDS = 12


def detect(sample: Sample) -> bool:
    fields = sample.fields
    return len(fields) == _FIELDS and (fields[0].isdigit() or fields[0] == "open time")


def read(sample: Sample) -> pd.DataFrame:
    text = sample.text
    first = text.lstrip().split(",", 1)[0].strip().lower()
    rows = csv_rows(sample.path, text, skip=1 if first == "open_time" else 0, width=_FIELDS)
    columns = [*CANDLE_COLUMNS, "quote_volume", "trades"]
    raw = pd.DataFrame([[*row[:6], row[7], row[8]] for row in rows], columns=columns, dtype=object)
    return candle_frame(sample.path, raw, "ts")
