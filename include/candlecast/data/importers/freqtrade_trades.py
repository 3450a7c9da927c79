"""freqtrade's trades files (``<PAIR>-trades.json.gz``, ``.feather``, ``.parquet``): one row
per trade, ``[timestamp ms, id, type, side, price, amount, cost]``. They hold trades, not
candles."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow.feather as feather
import pyarrow.parquet as pq

from candlecast.data.importers._common import (
    Sample,
    arrow_names,
    parse_floats,
    parse_json,
    parse_millis,
    read_arrow,
)
from candlecast.data.importers._trades import TRADE_COLUMNS
from candlecast.errors import HistoryFormatError

NAME = "freqtrade-trades"
_COLUMNS = ["timestamp", "id", "type", "side", "price", "amount", "cost"]
_SIDES = {"buy", "sell"}


def detect(sample: Sample) -> bool:
    """A JSON list of seven-field trade rows (a side of buy/sell), or an Arrow file with
    ``timestamp, price, amount`` columns."""
    if sample.magic is not None:
        return {"timestamp", "price", "amount"} <= set(arrow_names(sample))
    return sample.is_json and _is_trade(_first(sample.json))


def _first(data: Any) -> Any:
    return data[0] if isinstance(data, list) and data else None


def _is_trade(row: Any) -> bool:
    return isinstance(row, list) and len(row) == len(_COLUMNS) and row[3] in _SIDES


def read(sample: Sample) -> pd.DataFrame:
    """The trades as (ts, price, amount)."""
    if sample.magic is not None:
        read_table = pq.read_table if sample.magic == "parquet" else feather.read_table
        raw = read_arrow(sample.path, sample.payload, read_table, sample.magic)
    else:
        rows = parse_json(sample)
        for number, row in enumerate(rows, start=1):
            if not _is_trade(row):
                problem = f"row {number} is {str(row)[:60]}, expected a trade {_COLUMNS}"
                raise HistoryFormatError(sample.path, problem)
        raw = pd.DataFrame(rows, columns=_COLUMNS, dtype=object)
    path = sample.path
    values = [
        parse_millis(path, "timestamp", raw["timestamp"]),
        parse_floats(path, "price", raw["price"]),
        parse_floats(path, "amount", raw["amount"]),
    ]
    return pd.DataFrame(dict(zip(TRADE_COLUMNS, values, strict=True)))
