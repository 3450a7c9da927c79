"""Read published candle histories into candle frames (:data:`CANDLE_COLUMNS`).

Formats (``fmt``): ``binance`` (public data dump kline CSV: 12 columns, no header, open time in
ms or, in spot dumps since 2025, in µs), ``cryptodatadownload`` (banner line, header, newest
rows first, base volume in ``Volume <BASE>``), ``freqtrade-feather``, ``freqtrade-json``
(``[[ms, o, h, l, c, v], ...]``), ``csv`` and ``parquet`` (open/high/low/close/volume and a time
column). Files may be gzip- or single-member zip-compressed.

The reader is pure: it writes nothing, and keeps values as published (no row is dropped or
fixed; duplicates, gaps and bad prices are the validation layer's to find). Rows are sorted
by ``ts`` (stable). Anything it cannot read raises :class:`HistoryFormatError`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from candlecast.errors import PermanentError
from candlecast.sources import CANDLE_COLUMNS

log = logging.getLogger(__name__)

FORMATS = ("binance", "cryptodatadownload", "freqtrade-feather", "freqtrade-json", "csv", "parquet")
#: Accepted names of the time column of plain CSV / parquet files, in order of preference.
TIME_COLUMNS = ("ts", "unix", "open_time", "timestamp", "time", "datetime", "date")
_VALUES = CANDLE_COLUMNS[1:]
_BINANCE_FIELDS = 12
_EPOCH = pd.Timestamp(0, tz="UTC")


class HistoryFormatError(PermanentError, ValueError):
    """A history file cannot be read; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_history(path: Path | str, fmt: str | None = None) -> pd.DataFrame:
    """Read a candle history file; ``fmt`` None detects the format from name and content.

    Returns a frame of :data:`CANDLE_COLUMNS` (``ts`` int64 unix ms, the rest float64) sorted
    by ``ts``, with every row as published.

    Raises:
        HistoryFormatError: unknown format, missing columns, unparseable times or values,
            empty, corrupt or truncated file.
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    payload = _payload(path)
    fmt = fmt or detect_format(path, payload)
    reader = _READERS.get(fmt)
    if reader is None:
        raise HistoryFormatError(path, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    frame = reader(path, payload)
    if frame.empty:
        raise HistoryFormatError(path, "empty file: no candles in it")
    frame = frame[CANDLE_COLUMNS].sort_values("ts", kind="stable").reset_index(drop=True)
    log.info("read %d candles from %s (%s)", len(frame), path, fmt)
    return frame


def detect_format(path: Path, payload: bytes | None = None) -> str:
    """The format name of a history file, from its content and then its name."""
    payload = _payload(path) if payload is None else payload
    name = path.name.lower()
    if payload.startswith(b"PAR1"):
        return "parquet"
    if payload.startswith((b"ARROW1", b"FEA1")):
        return "freqtrade-feather"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".feather", ".arrow", ".ftr")):
        return "freqtrade-feather"
    if name.endswith((".json", ".json.gz")) or payload.lstrip()[:1] == b"[":
        return "freqtrade-json"
    try:
        first = payload.decode("utf-8-sig").lstrip().split("\n", 1)[0].strip()
    except UnicodeDecodeError:
        raise HistoryFormatError(
            path, "unknown format: binary content that is neither parquet nor feather"
        ) from None
    fields = [field.strip().lower() for field in first.split(",")]
    if "cryptodatadownload" in first.lower() or first.lower().startswith("http"):
        return "cryptodatadownload"
    if len(fields) == _BINANCE_FIELDS and (fields[0].isdigit() or fields[0] == "open_time"):
        return "binance"
    if "symbol" in fields and ("unix" in fields or "unix timestamp" in fields):
        return "cryptodatadownload"
    if len(fields) > 1:
        return "csv"
    raise HistoryFormatError(path, f"unknown format: cannot tell what {first[:40]!r} is")


def _payload(path: Path) -> bytes:
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


def _text(path: Path, payload: bytes) -> str:
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HistoryFormatError(path, f"not a text file (byte {exc.start} is not UTF-8)") from exc


def _rows(path: Path, text: str, skip: int = 0, width: int | None = None) -> list[list[str]]:
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


def _table(path: Path, rows: list[list[str]]) -> pd.DataFrame:
    """A frame of string columns from a header row and data rows (names lower-cased)."""
    if len(rows) < 2:
        raise HistoryFormatError(path, "empty file: no candles in it")
    return pd.DataFrame(rows[1:], columns=[name.lower() for name in rows[0]], dtype=object)


def _bad(path: Path, column: str, values: pd.Series, mask: np.ndarray, what: str) -> None:
    """Raise for the first row in ``mask``, showing its value."""
    row = int(np.flatnonzero(mask)[0])
    problem = f"{what} {column} value {values.iloc[row]!r} (data row {row + 1})"
    raise HistoryFormatError(path, problem)


def _missing(path: Path, missing: list[str], raw: pd.DataFrame) -> HistoryFormatError:
    return HistoryFormatError(
        path, f"missing columns {missing} (found {[str(c) for c in raw.columns]})"
    )


def _floats(path: Path, column: str, values: pd.Series) -> np.ndarray:
    """float64 values, parsed exactly (round trip); empty cells become NaN, junk is an error."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    values = values.astype(object)
    cells = ["nan" if v is None or v is pd.NA or v == "" else v for v in values]
    try:
        return np.array(cells, dtype="float64")
    except (TypeError, ValueError):
        _bad(path, column, values, np.array([not _is_float(c) for c in cells]), "non-numeric")
        raise


def _is_float(cell: object) -> bool:
    try:
        float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _millis(path: Path, column: str, values: pd.Series) -> np.ndarray:
    """Unix ms (int64) of a time column: datetimes, ISO strings or unix s / ms / µs / ns."""
    if values.isna().any():
        _bad(path, column, values, values.isna().to_numpy(), "unparseable")
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
        return ((stamps - _EPOCH) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")
    if not pd.api.types.is_numeric_dtype(values):
        values = values.astype(object)
        numbers = pd.to_numeric(values, errors="coerce")
        if len(numbers) and pd.isna(numbers.iloc[0]):  # a column of date strings
            return _iso_millis(path, column, values)
        if numbers.isna().any():  # a column of unix times, with junk in it
            _bad(path, column, values, numbers.isna().to_numpy(), "unparseable")
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


def _iso_millis(path: Path, column: str, values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    if stamps.isna().any():
        _bad(path, column, values, stamps.isna().to_numpy(), "unparseable")
    return ((stamps - _EPOCH) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")


def _candles(path: Path, raw: pd.DataFrame, time: str, volume: str = "volume") -> pd.DataFrame:
    """A candle frame from ``raw``'s time column and its open..close and volume columns."""
    names = [time, "open", "high", "low", "close", volume]
    missing = [name for name in names if name not in raw.columns]
    if missing:
        raise _missing(path, missing, raw)
    frame = pd.DataFrame({"ts": _millis(path, time, raw[time])})
    for target, source in zip(_VALUES, names[1:], strict=True):
        frame[target] = _floats(path, source, raw[source])
    return frame


def _read_binance(path: Path, payload: bytes) -> pd.DataFrame:
    text = _text(path, payload)
    first = text.lstrip().split(",", 1)[0].strip().lower()
    rows = _rows(path, text, skip=1 if first == "open_time" else 0, width=_BINANCE_FIELDS)
    raw = pd.DataFrame([row[:6] for row in rows], columns=CANDLE_COLUMNS, dtype=object)
    return _candles(path, raw, "ts")


def _read_cryptodatadownload(path: Path, payload: bytes) -> pd.DataFrame:
    text = _text(path, payload)
    first = text.lstrip().split("\n", 1)[0].lower()
    banner = "cryptodatadownload" in first or first.startswith("http")
    raw = _table(path, _rows(path, text.lstrip(), skip=1 if banner else 0))
    raw = raw.rename(columns={"unix timestamp": "unix"})
    return _candles(path, raw, "unix", _base_volume_column(path, raw))


def _base_volume_column(path: Path, raw: pd.DataFrame) -> str:
    """``volume <base>`` named after the symbol's base asset, else a plain ``volume``."""
    symbol = str(raw["symbol"].iloc[0]).upper() if "symbol" in raw else ""
    base = symbol.split("/")[0]
    named = {c[len("volume ") :].upper(): c for c in raw.columns if c.startswith("volume ")}
    matches = [asset for asset in named if base.startswith(asset)]
    if matches:
        return named[max(matches, key=len)]
    if "volume" in raw.columns:
        return "volume"
    return f"volume {base.lower() or '<base>'}"


def _arrow(path: Path, payload: bytes, read: Callable, kind: str) -> pd.DataFrame:
    """An Arrow-format file as a frame, column names lower-cased."""
    try:
        table = read(pa.BufferReader(payload))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise HistoryFormatError(path, f"corrupt or truncated {kind} file: {exc}") from exc
    return table.to_pandas().rename(columns=lambda name: str(name).strip().lower())


def _read_feather(path: Path, payload: bytes) -> pd.DataFrame:
    return _candles(path, _arrow(path, payload, feather.read_table, "feather"), "date")


def _read_json(path: Path, payload: bytes) -> pd.DataFrame:
    try:
        rows = json.loads(_text(path, payload))
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(path, f"corrupt or truncated JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise HistoryFormatError(path, f"expected a JSON list of rows, got {type(rows).__name__}")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != 6:
            problem = (
                f"row {number} is {str(row)[:60]}, expected [ms, open, high, low, close, volume]"
            )
            raise HistoryFormatError(path, problem)
    return _candles(path, pd.DataFrame(rows, columns=CANDLE_COLUMNS, dtype=object), "ts")


def _read_csv(path: Path, payload: bytes) -> pd.DataFrame:
    raw = _table(path, _rows(path, _text(path, payload)))
    return _candles(path, raw, _time_column(path, raw))


def _read_parquet(path: Path, payload: bytes) -> pd.DataFrame:
    raw = _arrow(path, payload, pq.read_table, "parquet")
    return _candles(path, raw, _time_column(path, raw))


def _time_column(path: Path, raw: pd.DataFrame) -> str:
    for name in TIME_COLUMNS:
        if name in raw.columns:
            return name
    missing = ["time column (one of " + "/".join(TIME_COLUMNS) + ")"]
    raise _missing(path, missing + [name for name in _VALUES if name not in raw.columns], raw)


_READERS: dict[str, Callable[[Path, bytes], pd.DataFrame]] = {
    "binance": _read_binance,
    "cryptodatadownload": _read_cryptodatadownload,
    "freqtrade-feather": _read_feather,
    "freqtrade-json": _read_json,
    "csv": _read_csv,
    "parquet": _read_parquet,
}
