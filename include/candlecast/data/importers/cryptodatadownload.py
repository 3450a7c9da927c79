"""CryptoDataDownload's CSV files, in every layout they have had, told apart by the header.

An optional banner line (``https://www.CryptoDataDownload.com``), a header, rows usually newest
first. Time from ``unix``/``Unix Timestamp`` (s or ms) when there is one, else from ``date``
(``2019-10-17 09-AM``, ``2019-10-17 09:00:00``, ISO 8601, or a bare date in daily files).
Volume columns are named after an asset (``Volume BTC``, ``volume_btc``) or bare (``volume``):
the base volume is the one named after the symbol's base asset (symbol ``BTC/USD``,
``BTC-USD`` or ``BTCUSD``), the quote volume (``quote_volume``) the one named after its quote
asset. Base and quote are never guessed: where the names do not tell them apart the file is
refused. A ``tradecount`` column becomes ``trades``. The Bitstamp and Gemini files it
republishes share these layouts.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.data.importers._common import (
    EPOCH,
    Sample,
    assemble,
    column_key,
    csv_rows,
    missing_columns,
    parse_floats,
    parse_millis,
)
from candlecast.errors import HistoryFormatError

NAME = "cryptodatadownload"
#: CryptoDataDownload's time columns (as :func:`column_key` gives them): unix s or ms, else a
#: date.
_CDD_UNIX = ("unix", "unix timestamp")
_CDD_DATE = "date"
#: A volume column named after an asset, as :func:`column_key` gives it: ``volume btc``.
_NAMED = re.compile(r"volume ([a-z0-9]+)")
SYMBOL_SEPARATORS = re.compile(r"[/\-_: ]")
_AM_PM = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})[ T](?P<hour>\d{1,2})-(?P<half>[AaPp][Mm])$")
_DATE_LAYOUTS = (
    "2019-10-17 09-AM",
    "2019-10-17 09:00:00",
    "2019-10-17T09:00:00Z",
    "2019-10-17",
    "or a unix column",
)


def detect(sample: Sample) -> bool:
    """A banner line, or a header with a symbol, a time and open/close columns."""
    fields = sample.fields
    has_time = any(name in fields for name in (*_CDD_UNIX, _CDD_DATE))
    header = "symbol" in fields and has_time and {"open", "close"} <= set(fields)
    return _is_banner(sample.first_line) or header


def _is_banner(line: str) -> bool:
    """Whether ``line`` is CryptoDataDownload's banner (its URL, maybe followed by commas)."""
    line = line.strip().strip(",").strip().lower()
    return "cryptodatadownload" in line or line.startswith("http")


def read(sample: Sample) -> pd.DataFrame:
    """A CryptoDataDownload file: optional banner line, a header, rows (usually newest first).

    The time is the ``unix``/``unix timestamp`` column (s or ms) when there is one, else the
    ``date`` column; the base volume is the volume column named after the symbol's base asset
    and the quote volume the one named after its quote asset (see :func:`_cdd_volumes`).
    """
    path = sample.path
    text = sample.text.lstrip()
    banner = _is_banner(text.split("\n", 1)[0])
    rows = csv_rows(path, text, skip=1 if banner else 0)
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
        raise missing_columns(path, missing, raw)
    dates = column_key(time) == _CDD_DATE
    ts = (_date_millis if dates else parse_millis)(path, time, raw[time])
    frame = assemble(path, raw, ts, [*prices, base], quote)
    if "tradecount" in columns:  # Binance's files: the trades of each candle
        frame["trades"] = parse_floats(path, columns["tradecount"], raw[columns["tradecount"]])
    if "symbol" in columns:
        frame.attrs["symbols"] = sorted({str(c).strip() for c in raw[columns["symbol"]]} - {""})
    return frame


def _column_keys(path: Path, header: list[str]) -> dict[str, str]:
    """The header's names by :func:`column_key`; two names with one key are an error."""
    columns: dict[str, str] = {}
    for name in header:
        key = column_key(name)
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
        raise missing_columns(path, [f"volume {base.lower() or '<base>'}"], raw)
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
    parts = [part for part in SYMBOL_SEPARATORS.split(symbol) if part]
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
    return ((stamps - EPOCH) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")


def _am_pm_to_iso(match: re.Match[str]) -> str:
    """``2019-10-17 09-PM`` as ``2019-10-17 21:00:00``; an hour outside 1..12 is left as is."""
    hour = int(match["hour"])
    if not 1 <= hour <= 12:
        return match[0]
    hour = hour % 12 + (12 if match["half"].upper() == "PM" else 0)
    return f"{match['day']} {hour:02d}:00:00"
