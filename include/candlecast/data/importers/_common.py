"""What the readers of every format share: the file's bytes and text, CSV rows, and the
parsing of times and values into a candle frame (:data:`CANDLE_COLUMNS`).

Every reader keeps values as published (no row dropped or fixed) and raises
:class:`~candlecast.errors.HistoryFormatError` for what it cannot read.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.errors import HistoryFormatError

#: Accepted names of the time column of plain CSV / parquet files, in order of preference.
TIME_COLUMNS = ("ts", "unix", "open_time", "timestamp", "time", "datetime", "date")
VALUES = CANDLE_COLUMNS[1:]
EPOCH = pd.Timestamp(0, tz="UTC")
SEPARATORS = re.compile(r"[\s_]+")


@dataclass
class Sample:
    """A history file as the detectors and readers see it: its name and bytes (decompressed),
    and what they look at, computed once: the first text line, its fields, the JSON."""

    path: Path
    payload: bytes

    @cached_property
    def magic(self) -> str | None:
        """``parquet`` or ``feather`` by the file's magic bytes, else None."""
        if self.payload.startswith(b"PAR1"):
            return "parquet"
        if self.payload.startswith((b"ARROW1", b"FEA1")):
            return "feather"
        return None

    @cached_property
    def text(self) -> str:
        """The file's text (raises for text that is not UTF-8 or UTF-16 with a BOM)."""
        return decode_text(self.path, self.payload)

    @cached_property
    def first_line(self) -> str:
        """The first line of text ('' for a parquet or feather file: it has no lines)."""
        if self.magic is not None:
            return ""
        return self.text.lstrip().split("\n", 1)[0].strip()

    @cached_property
    def fields(self) -> list[str]:
        """The first line's fields as :func:`column_key` gives them ([] for a parquet or
        feather file: it has no lines)."""
        line = self.first_line
        return [column_key(cell) for cell in line.split(",")] if line else []

    @cached_property
    def is_json(self) -> bool:
        name = self.path.name.lower()
        return name.endswith((".json", ".json.gz")) or self.payload.lstrip()[:1] in (b"[", b"{")

    @cached_property
    def json(self) -> Any:
        """The parsed JSON (None when it does not parse: the reader says why)."""
        try:
            return json.loads(self.text)
        except (json.JSONDecodeError, HistoryFormatError):
            return None

    def numeric_fields(self, width: int) -> bool:
        """Whether the first line is ``width`` numbers (a headerless file of that width)."""
        return len(self.fields) == width and all(is_float(cell) for cell in self.fields)


def arrow_names(sample: Sample) -> list[str]:
    """The column names of a parquet or feather file (lower case; its schema only is read),
    [] when it is neither or unreadable."""
    source = pa.BufferReader(sample.payload)
    try:
        if sample.magic == "parquet":
            names = pq.read_schema(source).names
        elif sample.payload.startswith(b"ARROW1"):
            names = pa.ipc.open_file(source).schema.names
        else:
            return []
    except (pa.ArrowException, OSError, ValueError):
        return []
    return [str(name).strip().lower() for name in names]


def column_key(name: str) -> str:
    """A column name as compared: lower case, runs of spaces and underscores as one space."""
    return SEPARATORS.sub(" ", name.strip().lower()).strip()


def read_payload(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip or a single-member zip."""
    raw = path.read_bytes()
    try:
        if raw.startswith(b"\x1f\x8b"):
            raw = gzip.decompress(raw)
        elif raw.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise HistoryFormatError(path, f"zip holds {len(members)} files, expected 1")
                raw = archive.read(members[0])
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise HistoryFormatError(path, f"corrupt or truncated archive: {exc}") from exc
    if not raw.strip():
        raise HistoryFormatError(path, "empty file")
    return raw


def decode_text(path: Path, payload: bytes) -> str:
    """The file's text: UTF-8 (BOM skipped) or UTF-16 with its BOM; nothing is guessed."""
    if payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return payload.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise HistoryFormatError(path, f"corrupt UTF-16 text at byte {exc.start}") from exc
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HistoryFormatError(path, not_utf8(payload, exc.start)) from exc
    if "\x00" in text:
        problem = "NUL characters in the text: UTF-16 without a byte-order mark, or binary"
        raise HistoryFormatError(path, f"not UTF-8 text ({problem}); save it as UTF-8")
    return text


def not_utf8(payload: bytes, at: int) -> str:
    line = payload.count(b"\n", 0, at) + 1
    return (
        f"not UTF-8 text: byte 0x{payload[at]:02x} at offset {at} (line {line}) is not UTF-8 "
        "(latin-1 or another legacy encoding?); save the file as UTF-8"
    )


def csv_rows(path: Path, text: str, skip: int = 0, width: int | None = None) -> list[list[str]]:
    """CSV rows after ``skip`` lines, blank lines left out; every row must be ``width`` wide."""
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if number <= skip or not any(field.strip() for field in row):
            continue
        width = len(row) if width is None else width
        if len(row) != width:
            raise HistoryFormatError(
                path,
                f"line {number} has {len(row)} fields, expected {width} (corrupt or truncated)",
            )
        rows.append([field.strip() for field in row])
    return rows


def string_table(path: Path, rows: list[list[str]]) -> pd.DataFrame:
    """A frame of string columns from a header row and data rows (names lower-cased)."""
    if len(rows) < 2:
        raise HistoryFormatError(path, "empty file: no candles in it")
    return pd.DataFrame(rows[1:], columns=[name.lower() for name in rows[0]], dtype=object)


def raise_bad(path: Path, column: str, values: pd.Series, mask: np.ndarray, what: str) -> None:
    """Raise for the first row in ``mask``, showing its value."""
    row = int(np.flatnonzero(mask)[0])
    problem = f"{what} {column} value {values.iloc[row]!r} (data row {row + 1})"
    raise HistoryFormatError(path, problem)


def missing_columns(path: Path, missing: list[str], raw: pd.DataFrame) -> HistoryFormatError:
    return HistoryFormatError(
        path, f"missing columns {missing} (found {[str(c) for c in raw.columns]})"
    )


def parse_floats(path: Path, column: str, values: pd.Series) -> np.ndarray:
    """float64 values, parsed exactly (round trip); empty cells become NaN, junk is an error."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    values = values.astype(object)
    cells = ["nan" if v is None or v is pd.NA or v == "" else v for v in values]
    try:
        return np.array(cells, dtype="float64")
    except (TypeError, ValueError):
        raise_bad(path, column, values, np.array([not is_float(c) for c in cells]), "non-numeric")
        raise


def is_float(cell: object) -> bool:
    try:
        float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def parse_millis(path: Path, column: str, values: pd.Series) -> np.ndarray:
    """Unix ms (int64) of a time column: datetimes, ISO strings or unix s / ms / µs / ns."""
    if values.isna().any():
        raise_bad(path, column, values, values.isna().to_numpy(), "unparseable")
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
        return ((stamps - EPOCH) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")
    if not pd.api.types.is_numeric_dtype(values):
        values = values.astype(object)
        numbers = pd.to_numeric(values, errors="coerce")
        if len(numbers) and pd.isna(numbers.iloc[0]):  # a column of date strings
            return parse_iso_millis(path, column, values)
        if numbers.isna().any():  # a column of unix times, with junk in it
            raise_bad(path, column, values, numbers.isna().to_numpy(), "unparseable")
        values = numbers
    if pd.api.types.is_integer_dtype(values):
        ints = values.to_numpy(dtype="int64")
        return np.select(
            [ints < 10**11, ints < 10**14, ints < 10**17],
            [ints * 1000, ints, ints // 1000],
            ints // 1_000_000,
        )
    reals = values.to_numpy(dtype="float64")
    scaled = np.select(
        [reals < 1e11, reals < 1e14, reals < 1e17], [reals * 1000, reals, reals / 1000], reals / 1e6
    )
    return np.floor(scaled).astype("int64")


def parse_iso_millis(path: Path, column: str, values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    if stamps.isna().any():
        raise_bad(path, column, values, stamps.isna().to_numpy(), "unparseable")
    return ((stamps - EPOCH) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")


def candle_frame(
    path: Path, raw: pd.DataFrame, time: str, volume: str = "volume", quote: str | None = None
) -> pd.DataFrame:
    """A candle frame from ``raw``'s time column and its open..close and volume columns, with
    ``quote_volume`` from column ``quote`` when given (or a column of that name), and
    ``trades`` where ``raw`` has that column."""
    names = [time, "open", "high", "low", "close", volume]
    missing = [name for name in names if name not in raw.columns]
    if missing:
        raise missing_columns(path, missing, raw)
    quote = quote or ("quote_volume" if "quote_volume" in raw.columns else None)
    frame = assemble(path, raw, parse_millis(path, time, raw[time]), names[1:], quote)
    if "trades" in raw.columns:
        frame["trades"] = parse_floats(path, "trades", raw["trades"])
    return frame


def assemble(
    path: Path, raw: pd.DataFrame, ts: np.ndarray, values: list[str], quote: str | None
) -> pd.DataFrame:
    """A candle frame of ``ts`` and ``raw``'s columns ``values`` (open..close, base volume),
    plus ``quote_volume`` from column ``quote`` when it is not None."""
    frame = pd.DataFrame({"ts": ts})
    for target, source in zip(VALUES, values, strict=True):
        frame[target] = parse_floats(path, source, raw[source])
    if quote is not None:
        frame["quote_volume"] = parse_floats(path, quote, raw[quote])
    return frame


def read_arrow(path: Path, payload: bytes, read: Callable, kind: str) -> pd.DataFrame:
    """An Arrow-format file as a frame, column names lower-cased."""
    try:
        table = read(pa.BufferReader(payload))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise HistoryFormatError(path, f"corrupt or truncated {kind} file: {exc}") from exc
    return table.to_pandas().rename(columns=lambda name: str(name).strip().lower())


def find_time_column(path: Path, raw: pd.DataFrame) -> str:
    for name in TIME_COLUMNS:
        if name in raw.columns:
            return name
    missing = ["time column (one of " + "/".join(TIME_COLUMNS) + ")"]
    raise missing_columns(path, missing + [name for name in VALUES if name not in raw.columns], raw)


def parse_json(sample: Sample) -> Any:
    """The file's JSON; a file that does not parse is corrupt or truncated."""
    try:
        return json.loads(sample.text)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(sample.path, f"corrupt or truncated JSON: {exc}") from exc
