"""Read published candle histories into candle frames (:data:`CANDLE_COLUMNS`).

Formats (``fmt``), each in every layout it has had, told apart by content rather than one
fixed layout:

* ``binance``: public data dump kline CSV, 12 columns, no header (futures dumps: a header),
  open time in ms or, in spot dumps since 2025, in µs.
* ``cryptodatadownload``: an optional banner line (``https://www.CryptoDataDownload.com``), a
  header, rows usually newest first. Time from ``unix``/``Unix Timestamp`` (s or ms) when
  there is one, else from ``date`` (``2019-10-17 09-AM``, ``2019-10-17 09:00:00``, ISO 8601,
  or a bare date in daily files). Volume columns are named after an asset (``Volume BTC``,
  ``volume_btc``) or bare (``volume``): the base volume is the one named after the symbol's
  base asset (symbol ``BTC/USD``, ``BTC-USD`` or ``BTCUSD``), the quote volume
  (``quote_volume``) the one named after its quote asset. Base and quote are never guessed:
  where the names do not tell them apart the file is refused. Other columns (``tradecount``)
  are ignored.
* ``freqtrade-feather``: freqtrade's Arrow files (``date, open, high, low, close, volume``).
* ``freqtrade-json``: freqtrade's ``[[ms, o, h, l, c, v], ...]``, or a frame as pandas writes
  it (orient ``columns``: ``{"date": {"0": ms, ...}, "open": {...}}``, ``split``,
  ``records``, ``index``, ``table``), dates as unix ms or ISO strings.
* ``csv`` and ``parquet``: open/high/low/close/volume, a time column (:data:`TIME_COLUMNS`)
  and optionally ``quote_volume``.

Files may be gzip- or single-member zip-compressed. Text is UTF-8 (a byte-order mark is
skipped) or UTF-16 with a byte-order mark; anything else is refused naming the first byte
that is not UTF-8, never decoded by guess.

Given the stream's ``symbol``, a file that states another one is refused: a
CryptoDataDownload ``symbol`` column, or a name in freqtrade's (``ETH_BTC-5m.feather``) or
Binance's dump convention (``BTCUSDT-1h-2022-01.zip``).

The reader is pure: it writes nothing, and keeps values as published (no row is dropped or
fixed; duplicates, gaps, bad prices and swapped volume columns are the validation layer's to
find). Rows are sorted by ``ts`` (stable). Anything it cannot read raises
:class:`HistoryFormatError`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from candlecast.data.schema import CANDLE_COLUMNS, OPTIONAL_COLUMNS
from candlecast.errors import HistoryFormatError

log = logging.getLogger(__name__)

FORMATS = ("binance", "cryptodatadownload", "freqtrade-feather", "freqtrade-json", "csv", "parquet")
#: Accepted names of the time column of plain CSV / parquet files, in order of preference.
TIME_COLUMNS = ("ts", "unix", "open_time", "timestamp", "time", "datetime", "date")
_VALUES = CANDLE_COLUMNS[1:]
_BINANCE_FIELDS = 12
_EPOCH = pd.Timestamp(0, tz="UTC")
_SEPARATORS = re.compile(r"[\s_]+")
#: CryptoDataDownload's time columns (as :func:`_key` gives them): unix s or ms, else a date.
_CDD_UNIX = ("unix", "unix timestamp")
_CDD_DATE = "date"
#: A volume column named after an asset, as :func:`_key` gives it: ``volume btc``.
_NAMED = re.compile(r"volume ([a-z0-9]+)")
_SYMBOL_SEPARATORS = re.compile(r"[/\-_: ]")
_AM_PM = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})[ T](?P<hour>\d{1,2})-(?P<half>[AaPp][Mm])$")
_DATE_LAYOUTS = (
    "2019-10-17 09-AM",
    "2019-10-17 09:00:00",
    "2019-10-17T09:00:00Z",
    "2019-10-17",
    "or a unix column",
)
#: Names that make a JSON object pandas' ``columns`` orient rather than its ``index`` one.
_JSON_KEYS = {*TIME_COLUMNS, *_VALUES}


def read_history(
    path: Path | str, fmt: str | None = None, symbol: str | None = None
) -> pd.DataFrame:
    """Read a candle history file; ``fmt`` None detects the format from name and content.

    Returns a frame of :data:`CANDLE_COLUMNS` (``ts`` int64 unix ms, the rest float64), plus
    ``quote_volume`` where the file has an unambiguous quote volume column, sorted by ``ts``,
    with every row as published.

    Raises:
        HistoryFormatError: unknown format, missing columns, unparseable times or values,
            empty, corrupt or truncated file, text not UTF-8, a file of another ``symbol``.
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
    stated = frame.attrs.pop("symbols", None) or _named_symbols(path)
    if symbol is not None:
        _check_symbol(path, symbol, stated)
    if frame.empty:
        raise HistoryFormatError(path, "empty file: no candles in it")
    columns = [*CANDLE_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in frame.columns)]
    frame = frame[columns].sort_values("ts", kind="stable").reset_index(drop=True)
    log.info("read %d candles from %s (%s)", len(frame), path, fmt)
    return frame


def detect_format(path: Path, payload: bytes | None = None) -> str:
    """The format name of a history file, from its content and then its name."""
    payload = _payload(path) if payload is None else payload
    return _binary_format(path, payload) or _text_format(path, payload)


def _binary_format(path: Path, payload: bytes) -> str | None:
    """The format of an Arrow or JSON file (by magic bytes, then name), else None."""
    name = path.name.lower()
    if payload.startswith(b"PAR1"):
        return "parquet"
    if payload.startswith((b"ARROW1", b"FEA1")):
        return "freqtrade-feather"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".feather", ".arrow", ".ftr")):
        return "freqtrade-feather"
    if name.endswith((".json", ".json.gz")) or payload.lstrip()[:1] in (b"[", b"{"):
        return "freqtrade-json"
    return None


def _text_format(path: Path, payload: bytes) -> str:
    """The format of a CSV file, from its first line (a banner or a header)."""
    utf16 = payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\x00" in payload[:4096]:
        raise HistoryFormatError(
            path,
            "unknown format: binary content that is neither parquet nor feather "
            "(nor UTF-8 or UTF-16 text with a byte-order mark)",
        )
    first = _text(path, payload).lstrip().split("\n", 1)[0].strip()
    fields = [_key(field) for field in first.split(",")]
    if _is_banner(first) or _is_cdd_header(fields):
        return "cryptodatadownload"
    if len(fields) == _BINANCE_FIELDS and (fields[0].isdigit() or fields[0] == "open time"):
        return "binance"
    if len(fields) > 1:
        return "csv"
    raise HistoryFormatError(path, f"unknown format: cannot tell what {first[:40]!r} is")


def _key(name: str) -> str:
    """A column name as compared: lower case, runs of spaces and underscores as one space."""
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


def _is_banner(line: str) -> bool:
    """Whether ``line`` is CryptoDataDownload's banner (its URL, maybe followed by commas)."""
    line = line.strip().strip(",").strip().lower()
    return "cryptodatadownload" in line or line.startswith("http")


def _is_cdd_header(fields: list[str]) -> bool:
    """Whether header ``fields`` (as :func:`_key` gives them) are CryptoDataDownload's."""
    has_time = any(name in fields for name in (*_CDD_UNIX, _CDD_DATE))
    return "symbol" in fields and has_time and {"open", "close"} <= set(fields)


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
    """The file's text: UTF-8 (BOM skipped) or UTF-16 with its BOM; nothing is guessed."""
    if payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return payload.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise HistoryFormatError(path, f"corrupt UTF-16 text at byte {exc.start}") from exc
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HistoryFormatError(path, _not_utf8(payload, exc.start)) from exc
    if "\x00" in text:
        problem = "NUL characters in the text: UTF-16 without a byte-order mark, or binary"
        raise HistoryFormatError(path, f"not UTF-8 text ({problem}); save it as UTF-8")
    return text


def _not_utf8(payload: bytes, at: int) -> str:
    line = payload.count(b"\n", 0, at) + 1
    return (
        f"not UTF-8 text: byte 0x{payload[at]:02x} at offset {at} (line {line}) is not UTF-8 "
        "(latin-1 or another legacy encoding?); save the file as UTF-8"
    )


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


def _candles(
    path: Path, raw: pd.DataFrame, time: str, volume: str = "volume", quote: str | None = None
) -> pd.DataFrame:
    """A candle frame from ``raw``'s time column and its open..close and volume columns, with
    ``quote_volume`` from column ``quote`` when given (or a column of that name)."""
    names = [time, "open", "high", "low", "close", volume]
    missing = [name for name in names if name not in raw.columns]
    if missing:
        raise _missing(path, missing, raw)
    quote = quote or ("quote_volume" if "quote_volume" in raw.columns else None)
    return _assemble(path, raw, _millis(path, time, raw[time]), names[1:], quote)


def _assemble(
    path: Path, raw: pd.DataFrame, ts: np.ndarray, values: list[str], quote: str | None
) -> pd.DataFrame:
    """A candle frame of ``ts`` and ``raw``'s columns ``values`` (open..close, base volume),
    plus ``quote_volume`` from column ``quote`` when it is not None."""
    frame = pd.DataFrame({"ts": ts})
    for target, source in zip(_VALUES, values, strict=True):
        frame[target] = _floats(path, source, raw[source])
    if quote is not None:
        frame["quote_volume"] = _floats(path, quote, raw[quote])
    return frame


def _read_binance(path: Path, payload: bytes) -> pd.DataFrame:
    text = _text(path, payload)
    first = text.lstrip().split(",", 1)[0].strip().lower()
    rows = _rows(path, text, skip=1 if first == "open_time" else 0, width=_BINANCE_FIELDS)
    raw = pd.DataFrame([row[:6] for row in rows], columns=CANDLE_COLUMNS, dtype=object)
    return _candles(path, raw, "ts")


# --- CryptoDataDownload: every layout its files have had, told apart by the header ----------


def _read_cryptodatadownload(path: Path, payload: bytes) -> pd.DataFrame:
    """A CryptoDataDownload file: optional banner line, a header, rows (usually newest first).

    The time is the ``unix``/``unix timestamp`` column (s or ms) when there is one, else the
    ``date`` column; the base volume is the volume column named after the symbol's base asset
    and the quote volume the one named after its quote asset (see :func:`_cdd_volumes`).
    """
    text = _text(path, payload).lstrip()
    banner = _is_banner(text.split("\n", 1)[0])
    rows = _rows(path, text, skip=1 if banner else 0)
    if len(rows) < 2:
        raise HistoryFormatError(path, "empty file: no candles in it")
    columns = _column_keys(path, rows[0])
    raw = pd.DataFrame(rows[1:], columns=rows[0], dtype=object)
    base, quote = _cdd_volumes(path, raw, columns)
    time = next((columns[key] for key in (*_CDD_UNIX, _CDD_DATE) if key in columns), None)
    prices = [columns.get(name, name) for name in ("open", "high", "low", "close")]
    missing = [name for name in prices if name not in raw.columns]
    if time is None:
        missing.insert(0, f"time column (one of {'/'.join((*_CDD_UNIX, _CDD_DATE))})")
    if missing or time is None:
        raise _missing(path, missing, raw)
    dates = _key(time) == _CDD_DATE
    ts = (_date_millis if dates else _millis)(path, time, raw[time])
    frame = _assemble(path, raw, ts, [*prices, base], quote)
    if "symbol" in columns:
        frame.attrs["symbols"] = sorted({str(c).strip() for c in raw[columns["symbol"]]} - {""})
    return frame


def _column_keys(path: Path, header: list[str]) -> dict[str, str]:
    """The header's names by :func:`_key`; two names with one key are an error."""
    columns: dict[str, str] = {}
    for name in header:
        key = _key(name)
        if key in columns:
            problem = f"columns {columns[key]!r} and {name!r} are the same column ({key!r})"
            raise HistoryFormatError(path, problem)
        columns[key] = name
    return columns


def _cdd_volumes(path: Path, raw: pd.DataFrame, columns: dict[str, str]) -> tuple[str, str | None]:
    """The base volume column and the quote volume column (None when there is none).

    Volume columns are named after an asset (``Volume BTC``, ``volume_usd``) or bare
    (``volume``). The base volume is the one named after the symbol's base asset, else a bare
    ``volume`` when every named volume column is the quote one; the quote volume is the one
    named after the quote asset (``Volume USD`` for a USDT/USDC quote too), else a
    ``quote_volume`` column. Anything else is ambiguous: base and quote are never guessed.
    """
    named = {
        match[1].upper(): name for key, name in columns.items() if (match := _NAMED.fullmatch(key))
    }
    symbol = _symbol(raw, columns)
    base, quote = _split_symbol(symbol, named)
    quote_column = named.get(quote) or (named.get("USD") if quote.startswith("USD") else None)
    quote_column = quote_column or columns.get("quote volume")
    base_column = named.get(base) if base else None
    if base_column is None:
        base_column = _bare_volume(path, raw, columns, named, symbol, base, quote_column)
    return base_column, (quote_column if quote_column != base_column else None)


def _bare_volume(
    path: Path,
    raw: pd.DataFrame,
    columns: dict[str, str],
    named: dict[str, str],
    symbol: str,
    base: str,
    quote_column: str | None,
) -> str:
    """The bare ``volume`` column as the base volume, where no other column could be it."""
    others = [name for name in named.values() if name != quote_column]
    bare = columns.get("volume")
    if bare is not None and not others:
        return bare
    if bare is None and (base or not others):
        raise _missing(path, [f"volume {base.lower() or '<base>'}"], raw)
    found = [name for key, name in columns.items() if key == "volume" or _NAMED.fullmatch(key)]
    asset = f"base asset {base}" if base else "base asset unknown"
    problem = (
        f"ambiguous volume columns {found} for symbol {symbol!r} ({asset}): "
        "cannot tell which one is the base volume"
    )
    raise HistoryFormatError(path, problem)


def _symbol(raw: pd.DataFrame, columns: dict[str, str]) -> str:
    """The file's symbol (its first non-empty ``symbol`` cell, upper case), or ''."""
    if "symbol" not in columns:
        return ""
    cells = raw[columns["symbol"]]
    return next((str(cell).strip().upper() for cell in cells if str(cell).strip()), "")


def _split_symbol(symbol: str, assets: dict[str, str]) -> tuple[str, str]:
    """(base, quote) of ``BTC/USD``, ``BTC-USD``, ``BTC_USD`` or ``BTCUSD`` (split where a
    volume column's asset name starts or ends it); ('', '') where it cannot be told."""
    parts = [part for part in _SYMBOL_SEPARATORS.split(symbol) if part]
    if len(parts) >= 2:
        return parts[0], parts[1]
    splits = {(a, symbol[len(a) :]) for a in assets if symbol.startswith(a) and symbol != a}
    splits |= {(symbol[: -len(a)], a) for a in assets if symbol.endswith(a) and symbol != a}
    both = {split for split in splits if split[0] in assets and split[1] in assets}
    chosen = both or splits
    return next(iter(chosen)) if len(chosen) == 1 else ("", "")


def _date_millis(path: Path, column: str, values: pd.Series) -> np.ndarray:
    """Unix ms of CryptoDataDownload dates: ``2019-10-17 09-AM``, ``2019-10-17 09:00:00``,
    ISO 8601 (``T``, ``Z``, offsets) or a bare date (daily files); all UTC."""
    text = values.astype(str).str.strip()
    iso = text.str.replace(_AM_PM, _am_pm_to_iso, regex=True)
    stamps = pd.to_datetime(iso, utc=True, format="ISO8601", errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        problem = (
            f"unparseable {column} value {values.iloc[row]!r} (data row {row + 1}): not a known "
            f"date layout ({', '.join(_DATE_LAYOUTS)})"
        )
        raise HistoryFormatError(path, problem)
    return ((stamps - _EPOCH) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")


def _am_pm_to_iso(match: re.Match[str]) -> str:
    """``2019-10-17 09-PM`` as ``2019-10-17 21:00:00``; an hour outside 1..12 is left as is."""
    hour = int(match["hour"])
    if not 1 <= hour <= 12:
        return match[0]
    hour = hour % 12 + (12 if match["half"].upper() == "PM" else 0)
    return f"{match['day']} {hour:02d}:00:00"


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
    """freqtrade's ``[[ms, o, h, l, c, v], ...]`` or a frame pandas wrote (orient ``columns``,
    ``split``, ``records``, ``index`` or ``table``), times as unix ms or ISO strings."""
    try:
        data = json.loads(_text(path, payload))
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(path, f"corrupt or truncated JSON: {exc}") from exc
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
    return _candles(path, pd.DataFrame(rows, columns=CANDLE_COLUMNS, dtype=object), "ts")


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
    return _candles(path, raw, _time_column(path, raw))


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


#: File names that state the market: freqtrade's ``ETH_BTC-5m.feather`` (futures:
#: ``ETH_USDT_USDT-1h-futures.feather``) and Binance's dumps ``BTCUSDT-1h-2022-01.zip``.
_FREQTRADE_NAME = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)(?:_[A-Z0-9]+)?-\d+[smhdwM]\b")
_BINANCE_NAME = re.compile(r"^([A-Z0-9]+)-\d+[smhdwM]-\d{4}-\d{2}(?:-\d{2})?\.")


def _named_symbols(path: Path) -> list[str]:
    """The market a file's name states by one of the known conventions, else none."""
    if match := _FREQTRADE_NAME.match(path.name):
        return [f"{match[1]}/{match[2]}"]
    if match := _BINANCE_NAME.match(path.name):
        return [match[1]]
    return []


def _check_symbol(path: Path, symbol: str, stated: list[str]) -> None:
    """Refuse a file that states another market than ``symbol`` (compared without
    separators or case: ``BTC/USD`` = ``BTCUSD`` = ``btc-usd``)."""
    wanted = _SYMBOL_SEPARATORS.sub("", symbol).upper()
    other = [s for s in stated if _SYMBOL_SEPARATORS.sub("", s).upper() != wanted]
    if other:
        problem = f"the file is for {', '.join(other)}, not {symbol}: refusing to import it"
        raise HistoryFormatError(path, problem)


_READERS: dict[str, Callable[[Path, bytes], pd.DataFrame]] = {
    "binance": _read_binance,
    "cryptodatadownload": _read_cryptodatadownload,
    "freqtrade-feather": _read_feather,
    "freqtrade-json": _read_json,
    "csv": _read_csv,
    "parquet": _read_parquet,
}
