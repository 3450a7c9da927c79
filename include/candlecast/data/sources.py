"""Candle sources: anything with ccxt's ``fetch_ohlcv`` interface.

The live ccxt exchanges and the :class:`ReplayExchange` (a recorded history file) are used the
same way: :func:`fetch_range` pages through ``fetch_ohlcv(symbol, timeframe, since, limit)``
until the requested interval is covered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.schema import CANDLE_COLUMNS, OPTIONAL_COLUMNS
from candlecast.errors import SourceError
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)


class CandleSource(Protocol):
    """The part of a ccxt exchange that candle ingestion uses."""

    id: str

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None
    ) -> list[list[float]]: ...


class ReplayExchange:
    """Serves recorded candles like an exchange's candle endpoint does.

    Candles are returned oldest first, from ``since`` on, at most ``limit`` per call, and
    only those that have closed by ``now_ms`` (the replay clock), as a live exchange would.
    """

    id = "replay"
    page_limit = 1000

    def __init__(self, candles: dict[tuple[str, str], pd.DataFrame], now_ms: int | None = None):
        self._candles = {key: frame.sort_values("ts") for key, frame in candles.items()}
        self.now_ms = now_ms

    @classmethod
    def from_pair(cls, pair: PairConfig) -> ReplayExchange:
        from candlecast.data.importers import read_history

        if pair.replay_file is None:
            raise SourceError(f"{pair.stream.label} has no replay_file")
        return cls({(pair.symbol, pair.timeframe): read_history(pair.replay_file)})

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None
    ) -> list[list[float]]:
        frame = self._candles.get((symbol, timeframe))
        if frame is None:
            raise SourceError(f"replay exchange has no {symbol} {timeframe} candles")
        ts = frame["ts"].to_numpy()
        first = 0 if since is None else int(np.searchsorted(ts, since, side="left"))
        stop = len(frame)
        if self.now_ms is not None:
            closed_before = self.now_ms - timeframe_ms(timeframe)
            stop = int(np.searchsorted(ts, closed_before, side="right"))
        count = min(limit or self.page_limit, self.page_limit)
        page = frame.iloc[first : min(first + count, stop)]
        columns = [*CANDLE_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in frame.columns)]
        return page[columns].to_numpy(dtype=float).tolist()


def source_for(pair: PairConfig) -> CandleSource:
    """The candle source a pair's config names."""
    if pair.replay_file is not None:
        return ReplayExchange.from_pair(pair)
    from candlecast.data.exchanges import make_source  # imports ccxt: only live pairs pay for it
    from candlecast.settings import get_settings

    return make_source(pair.exchange, base_url=get_settings().exchange_url)


def iter_pages(
    source: CandleSource, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> Iterator[pd.DataFrame]:
    """Candles opening in ``[start_ms, end_ms)``, one frame per page the source returns.

    Pages continue from the candle after the last one received, so a short page costs one
    more request, never a candle; an empty page ends the range.
    """
    step = timeframe_ms(timeframe)
    since = start_ms
    while since < end_ms:
        page = source.fetch_ohlcv(symbol, timeframe, since=since, limit=None)
        page = [row for row in page if since <= row[0] < end_ms]
        if not page:
            if since < end_ms - step:
                log.info("%s has no %s %s candles from %d on", source.id, symbol, timeframe, since)
            return
        yield _frame(page)
        since = int(page[-1][0]) + step


def fetch_range(
    source: CandleSource, symbol: str, timeframe: str, start_ms: int, end_ms: int
) -> pd.DataFrame:
    """All candles opening in ``[start_ms, end_ms)``, paging through the source."""
    pages = list(iter_pages(source, symbol, timeframe, start_ms, end_ms))
    frame = pd.concat(pages, ignore_index=True) if pages else _frame([])
    log.info("fetched %d %s %s candles from %s", len(frame), symbol, timeframe, source.id)
    return frame


def _frame(rows: list[list[float]]) -> pd.DataFrame:
    width = max((len(r) for r in rows), default=len(CANDLE_COLUMNS))
    columns = [*CANDLE_COLUMNS, *OPTIONAL_COLUMNS][: max(width, len(CANDLE_COLUMNS))]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ts"] = frame["ts"].astype("int64")
    return frame
