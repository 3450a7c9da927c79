"""freqtrade's JSON candles, ``[[ms, open, high, low, close, volume], ...]``, or a frame as
pandas writes it (orient ``columns``: ``{"date": {"0": ms, ...}, "open": {...}}``, ``split``,
``records``, ``index``, ``table``), dates as unix ms or ISO strings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from candlecast.data.importers._common import (
    TIME_COLUMNS,
    VALUES,
    Sample,
    candle_frame,
    find_time_column,
    parse_json,
)
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.errors import HistoryFormatError

NAME = "freqtrade-json"
#: Names that make a JSON object pandas' ``columns`` orient rather than its ``index`` one.
_JSON_KEYS = {*TIME_COLUMNS, *VALUES}


def detect(sample: Sample) -> bool:
    """A ``.json`` name, or content that opens a JSON list or object."""
    return sample.is_json


def read(sample: Sample) -> pd.DataFrame:
    """freqtrade's ``[[ms, o, h, l, c, v], ...]`` or a frame pandas wrote (orient ``columns``,
    ``split``, ``records``, ``index`` or ``table``), times as unix ms or ISO strings."""
    path = sample.path
    data = parse_json(sample)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return _json_frame(path, _json_records(path, data))
    if isinstance(data, list):
        return _json_rows(path, data)
    if isinstance(data, dict):
        return _json_frame(path, _json_object(path, data))
    problem = f"expected a JSON list of rows or a pandas frame object, got {type(data).__name__}"
    raise HistoryFormatError(path, problem)


def _json_rows(path: Path, rows: list) -> pd.DataFrame:
    """freqtrade's layout: a list of ``[ms, open, high, low, close, volume]`` rows."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != 6:
            problem = (
                f"row {number} is {str(row)[:60]}, expected [ms, open, high, low, close, volume]"
            )
            raise HistoryFormatError(path, problem)
    return candle_frame(path, pd.DataFrame(rows, columns=CANDLE_COLUMNS, dtype=object), "ts")


def _json_records(path: Path, records: list) -> pd.DataFrame:
    """pandas' ``records`` orient: ``[{"date": ..., "open": ...}, ...]``."""
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            problem = f"row {number} is {str(record)[:60]}, expected an object like row 1"
            raise HistoryFormatError(path, problem)
    return pd.DataFrame.from_records(records).astype(object)


def _json_object(path: Path, data: dict) -> pd.DataFrame:
    """A frame from pandas' ``split``, ``table``, ``columns`` or ``index`` orient."""
    if isinstance(data.get("columns"), list) and isinstance(data.get("data"), list):
        return _json_split(path, data["columns"], data["data"])
    if isinstance(data.get("schema"), dict) and isinstance(data.get("data"), list):
        return _json_records(path, data["data"])
    inner = list(data.values())
    if inner and all(isinstance(value, dict) for value in inner):
        if any(str(name).strip().lower() in _JSON_KEYS for name in data):
            return _json_columns(path, data)
        return _json_records(path, inner)
    problem = (
        "expected a JSON list of rows or a pandas frame object (orient columns, split, index, "
        f"table), got an object with keys {[str(name) for name in data][:8]}"
    )
    raise HistoryFormatError(path, problem)


def _json_split(path: Path, columns: list, rows: list) -> pd.DataFrame:
    """pandas' ``split`` orient: ``{"columns": [...], "index": [...], "data": [[...], ...]}``."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != len(columns):
            problem = f"row {number} is {str(row)[:60]}, expected {len(columns)} values {columns}"
            raise HistoryFormatError(path, problem)
    return pd.DataFrame(rows, columns=[str(name) for name in columns], dtype=object)


def _json_columns(path: Path, data: dict[str, dict]) -> pd.DataFrame:
    """pandas' default ``columns`` orient: ``{"date": {"0": ..., ...}, "open": {...}, ...}``;
    rows in the order of the first column's labels."""
    labels = list(next(iter(data.values())))
    for name, cells in data.items():
        if cells.keys() != set(labels):
            problem = f"column {name!r} has other row labels than column {next(iter(data))!r}"
            raise HistoryFormatError(path, problem)
    return pd.DataFrame({name: [cells[label] for label in labels] for name, cells in data.items()})


def _json_frame(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """Candles from a JSON frame of named columns (names compared in lower case)."""
    raw = raw.astype(object).rename(columns=lambda name: str(name).strip().lower())
    return candle_frame(path, raw, find_time_column(path, raw))
