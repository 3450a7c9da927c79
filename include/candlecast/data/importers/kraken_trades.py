"""Kraken's trades CSV (its downloadable "time and sales" history): no header; unix seconds,
price, volume. They hold trades, not candles."""

from __future__ import annotations

import pandas as pd

from candlecast.data.importers._common import (
    Sample,
    csv_rows,
    parse_floats,
    parse_millis,
    string_table,
)
from candlecast.data.importers._trades import TRADE_COLUMNS

NAME = "kraken-trades"
_FIELDS = 3


def detect(sample: Sample) -> bool:
    """Three numbers, the first unix seconds."""
    if not sample.numeric_fields(_FIELDS):
        return False
    return 10**8 <= float(sample.fields[0]) < 10**11


def read(sample: Sample) -> pd.DataFrame:
    """The trades as (ts, price, amount)."""
    path = sample.path
    rows = csv_rows(path, sample.text, width=_FIELDS)
    raw = string_table(path, [["time", "price", "volume"], *rows])
    values = [
        parse_millis(path, "time", raw["time"]),
        parse_floats(path, "price", raw["price"]),
        parse_floats(path, "volume", raw["volume"]),
    ]
    return pd.DataFrame(dict(zip(TRADE_COLUMNS, values, strict=True)))
