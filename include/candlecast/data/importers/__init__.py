"""Read published candle histories into candle frames (:data:`CANDLE_COLUMNS`).

One module per format, each with a ``detect`` (by content first, then by name) and a
``read``; :data:`REGISTRY` lists them in the order detection asks them, so adding a format is
one module, its entry here and its fixtures. Formats (``fmt``):

* ``binance``: public data dump kline CSV (:mod:`.binance`).
* ``cryptodatadownload``: CryptoDataDownload CSV in every layout it has had, Bitstamp and
  Gemini republished included (:mod:`.cryptodatadownload`).
* ``kraken``: Kraken's OHLCVT download, headerless, with trade counts (:mod:`.kraken`).
* ``coinbase``: Coinbase Exchange API candle pages, newest first (:mod:`.coinbase`).
* ``freqtrade-feather``, ``freqtrade-json``: freqtrade's candle files.
* ``csv``, ``parquet``: open/high/low/close/volume, a time column (:data:`TIME_COLUMNS`),
  optionally ``quote_volume`` and ``trades``.
* ``freqtrade-trades``, ``kraken-trades``: files of trades, not candles: refused saying so,
  or resampled into candles with ``from_trades=<timeframe>``.

Files may be gzip- or single-member zip-compressed. Text is UTF-8 (a byte-order mark is
skipped) or UTF-16 with a byte-order mark; anything else is refused naming the first byte
that is not UTF-8, never decoded by guess.

Given the stream's ``symbol``, a file that states another one is refused: a
CryptoDataDownload ``symbol`` column, or a name in freqtrade's (``ETH_BTC-5m.feather``,
``XRP_ETH-trades.json.gz``) or Binance's dump convention (``BTCUSDT-1h-2022-01.zip``).

The reader is pure: it writes nothing, and keeps values as published (no row is dropped or
fixed; duplicates, gaps, bad prices and swapped volume columns are the validation layer's to
find). Rows are sorted by ``ts`` (stable). Anything it cannot read raises
:class:`HistoryFormatError`.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from candlecast.data.importers import (
    binance,
    coinbase,
    cryptodatadownload,
    freqtrade_feather,
    freqtrade_json,
    freqtrade_trades,
    kraken,
    kraken_trades,
    plain_csv,
    plain_parquet,
)
from candlecast.data.importers._common import TIME_COLUMNS, Sample, read_payload
from candlecast.data.importers._trades import not_candles, to_candles
from candlecast.data.importers.cryptodatadownload import SYMBOL_SEPARATORS
from candlecast.data.schema import CANDLE_COLUMNS, OPTIONAL_COLUMNS
from candlecast.errors import HistoryFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """A history format: how to recognise a file of it and how to read one."""

    name: str
    detect: Callable[[Sample], bool]
    read: Callable[[Sample], pd.DataFrame]
    #: ``trades``: the reader returns trades (ts, price, amount), not candles.
    holds: str = "candles"
    #: Whether detection reads the file as text (it must be UTF-8 or UTF-16 with a BOM).
    text: bool = False


def _format(module: object, holds: str = "candles", text: bool = False) -> Format:
    name, detect, read = module.NAME, module.detect, module.read  # type: ignore[attr-defined]
    return Format(name, detect, read, holds, text)


#: Detection order: binary by magic bytes, then JSON, then text from the most specific
#: layout to the plain CSV that takes any header.
REGISTRY = (
    _format(freqtrade_trades, holds="trades"),
    _format(plain_parquet),
    _format(freqtrade_feather),
    _format(coinbase),
    _format(freqtrade_json),
    _format(cryptodatadownload, text=True),
    _format(binance, text=True),
    _format(kraken, text=True),
    _format(kraken_trades, holds="trades", text=True),
    _format(plain_csv, text=True),
)
FORMATS = tuple(f.name for f in REGISTRY)
_BY_NAME = {f.name: f for f in REGISTRY}

__all__ = ["FORMATS", "REGISTRY", "TIME_COLUMNS", "Format", "detect_format", "read_history"]


def read_history(
    path: Path | str,
    fmt: str | None = None,
    symbol: str | None = None,
    from_trades: str | None = None,
) -> pd.DataFrame:
    """Read a candle history file; ``fmt`` None detects the format from content and name.

    Returns a frame of :data:`CANDLE_COLUMNS` (``ts`` int64 unix ms, the rest float64), plus
    ``quote_volume`` and ``trades`` where the file has them, sorted by ``ts``, with every row
    as published. A file of trades is resampled into candles of the timeframe
    ``from_trades`` names (candles without trades absent), and refused without it.

    Raises:
        HistoryFormatError: unknown format, missing columns, unparseable times or values,
            empty, corrupt or truncated file, text not UTF-8, a file of another ``symbol``, a
            file of trades without ``from_trades``.
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sample = Sample(path, read_payload(path))
    found = _by_name(path, fmt) if fmt else _detect(sample)
    frame = found.read(sample)
    stated = frame.attrs.pop("symbols", None) or _named_symbols(path)
    if symbol is not None:
        _check_symbol(path, symbol, stated)
    if found.holds == "trades":
        if from_trades is None:
            raise not_candles(path, frame, found.name)
        frame = to_candles(frame, from_trades)
    if frame.empty:
        raise HistoryFormatError(path, "empty file: no candles in it")
    columns = [*CANDLE_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in frame.columns)]
    frame = frame[columns].sort_values("ts", kind="stable").reset_index(drop=True)
    log.info("read %d candles from %s (%s)", len(frame), path, found.name)
    return frame


def detect_format(path: Path, payload: bytes | None = None) -> str:
    """The format name of a history file, from its content and then its name."""
    return _detect(Sample(path, read_payload(path) if payload is None else payload)).name


def _by_name(path: Path, fmt: str) -> Format:
    found = _BY_NAME.get(fmt)
    if found is None:
        raise HistoryFormatError(path, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return found


def _detect(sample: Sample) -> Format:
    """The first format of :data:`REGISTRY` that claims the file."""
    for candidate in REGISTRY:
        if candidate.text and sample.magic is None:
            _check_text(sample)
        if candidate.detect(sample):
            return candidate
    first = sample.first_line
    raise HistoryFormatError(sample.path, f"unknown format: cannot tell what {first[:40]!r} is")


def _check_text(sample: Sample) -> None:
    """Refuse binary content that no binary format claimed before reading it as text."""
    utf16 = sample.payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\x00" in sample.payload[:4096]:
        raise HistoryFormatError(
            sample.path,
            "unknown format: binary content that is neither parquet nor feather "
            "(nor UTF-8 or UTF-16 text with a byte-order mark)",
        )


#: File names that state the market: freqtrade's ``ETH_BTC-5m.feather`` (futures:
#: ``ETH_USDT_USDT-1h-futures.feather``) and Binance's dumps ``BTCUSDT-1h-2022-01.zip``.
_FREQTRADE_NAME = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)(?:_[A-Z0-9]+)?-\d+[smhdwM]\b")
_BINANCE_NAME = re.compile(r"^([A-Z0-9]+)-\d+[smhdwM]-\d{4}-\d{2}(?:-\d{2})?\.")
#: freqtrade's trades files: ``XRP_ETH-trades.json.gz``.
_TRADES_NAME = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)(?:_[A-Z0-9]+)?-trades\.")


def _named_symbols(path: Path) -> list[str]:
    """The market a file's name states by one of the known conventions, else none."""
    if match := _FREQTRADE_NAME.match(path.name) or _TRADES_NAME.match(path.name):
        return [f"{match[1]}/{match[2]}"]
    if match := _BINANCE_NAME.match(path.name):
        return [match[1]]
    return []


def _check_symbol(path: Path, symbol: str, stated: list[str]) -> None:
    """Refuse a file that states another market than ``symbol`` (compared without
    separators or case: ``BTC/USD`` = ``BTCUSD`` = ``btc-usd``)."""
    wanted = SYMBOL_SEPARATORS.sub("", symbol).upper()
    other = [s for s in stated if SYMBOL_SEPARATORS.sub("", s).upper() != wanted]
    if other:
        problem = f"the file is for {', '.join(other)}, not {symbol}: refusing to import it"
        raise HistoryFormatError(path, problem)
