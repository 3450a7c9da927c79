"""Coinbase Exchange's candles as its REST API pages return them (``GET
/products/<id>/candles``, at most 300 per page): ``[[time, low, high, open, close, volume],
...]``, time in unix seconds, newest first. A file of several saved pages (a list of pages)
is read too."""

from __future__ import annotations

from typing import Any

import pandas as pd

from candlecast.data.importers._common import Sample, candle_frame, parse_json
from candlecast.errors import HistoryFormatError

NAME = "coinbase"
_FIELDS = ["ts", "low", "high", "open", "close", "volume"]


def detect(sample: Sample) -> bool:
    """A JSON list of six-number rows whose first number is unix seconds (freqtrade's rows
    have milliseconds, and open before low)."""
    rows = _rows(sample.json) if sample.is_json else None
    return rows is not None and _is_row(rows[0]) and 10**8 <= rows[0][0] < 10**11


def _rows(data: Any) -> list | None:
    if not isinstance(data, list) or not data:
        return None
    if all(isinstance(page, list) and page and isinstance(page[0], list) for page in data):
        return [row for page in data for row in page]  # saved pages, one after the other
    return data


def _is_row(row: Any) -> bool:
    numbers = isinstance(row, list) and all(isinstance(v, int | float) for v in row)
    return numbers and len(row) == len(_FIELDS)


def read(sample: Sample) -> pd.DataFrame:
    rows = _rows(parse_json(sample)) or []
    for number, row in enumerate(rows, start=1):
        if not _is_row(row):
            expected = "[time, low, high, open, close, volume]"
            problem = f"row {number} is {str(row)[:60]}, expected {expected}"
            raise HistoryFormatError(sample.path, problem)
    return candle_frame(sample.path, pd.DataFrame(rows, columns=_FIELDS, dtype=object), "ts")
