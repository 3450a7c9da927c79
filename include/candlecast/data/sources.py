"""Candle sources: anything with ccxt's ``fetch_ohlcv`` interface.

The live ccxt exchanges and the :class:`ReplayExchange` (a recorded history file) are used the
same way: :func:`fetch_range` pages through ``fetch_ohlcv(symbol, timeframe, since, limit)``
until the requested interval is covered.

An empty page means "no newer candles" only where the range has reached the source's present
(``present_ms``: the exchange clock, or the end of a recording): there the range is done.
Anywhere earlier it means candles the source should have are missing, and paging stops with
:class:`~candlecast.errors.ExchangeUnavailableError` naming the timestamp, rather than
pretending the range is complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.limits import HistoryLimit
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.errors import ExchangeUnavailableError, SourceError, UnsupportedExchangeError
from candlecast.timeframes import ms_to_iso, timeframe_ms

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

    def present_ms(self, symbol: str, timeframe: str) -> int | None:
        """The replay's now: its clock, else the close of the recording's last candle."""
        if self.now_ms is not None:
            return self.now_ms
        frame = self._candles.get((symbol, timeframe))
        if frame is None or frame.empty:
            return None
        return int(frame["ts"].iloc[-1]) + timeframe_ms(timeframe)

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
        # ccxt's rows: the six candle fields, and a quote volume as the seventh where given
        columns = [*CANDLE_COLUMNS, *(["quote_volume"] if "quote_volume" in frame else [])]
        return page[columns].to_numpy(dtype=float).tolist()


def check_source(pair: PairConfig) -> None:
    """Refuse a pair that validates but cannot run (``candlecast pairs`` and every ingestion
    ask): a ``replay_file`` that is not there, an exchange ccxt does not know, or a
    ``timeframe`` the exchange does not serve, by ccxt's own metadata (no network).

    Raises:
        SourceError, UnsupportedExchangeError: one line naming the stream and the key.
    """
    label = pair.stream.label
    if pair.replay_file is not None:
        if not pair.replay_file.is_file():
            raise SourceError(f"{label}: replay_file {pair.replay_file} does not exist")
        return
    from candlecast.data.exchanges import served_timeframes

    served = served_timeframes(pair.exchange)
    if served and pair.timeframe not in served:
        raise UnsupportedExchangeError(
            f"{label}: timeframe {pair.timeframe} is not served by {pair.exchange} "
            f"(ccxt lists {', '.join(served)}); derive it with data.derived_timeframes instead"
        )


def source_for(pair: PairConfig) -> CandleSource:
    """The candle source a pair's config names (checked first: :func:`check_source`)."""
    check_source(pair)
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
    more request, never a candle. A page of candles beyond the range ends it; an empty page
    ends it only where it reaches the source's present (:func:`reached_present`).

    Raises:
        ExchangeUnavailableError: an empty page before the present; names where paging stopped.
    """
    step = timeframe_ms(timeframe)
    since = start_ms
    while since < end_ms:
        served = source.fetch_ohlcv(symbol, timeframe, since=since, limit=None)
        page = [row for row in served if since <= row[0] < end_ms]
        if not page:
            if not served and not reached_present(source, symbol, timeframe, since):
                raise ExchangeUnavailableError(_stopped(source, symbol, timeframe, since, end_ms))
            if since < end_ms - step:
                log.info("%s has no %s %s candles from %d on", source.id, symbol, timeframe, since)
            return
        yield _frame(page)
        since = int(page[-1][0]) + step


def limit_of(source: CandleSource) -> HistoryLimit:
    """A source's paging and history limits (a source that declares none has none)."""
    declared = getattr(source, "history", None)
    return declared if isinstance(declared, HistoryLimit) else HistoryLimit(source.id)


def present_of(source: CandleSource, symbol: str, timeframe: str) -> int:
    """The source's now (its clock, or the end of a recording), else the real time."""
    present = getattr(source, "present_ms", None)
    now = present(symbol, timeframe) if callable(present) else None
    return int(time.time() * 1000) if now is None else int(now)


def reached_present(source: CandleSource, symbol: str, timeframe: str, since: int) -> bool:
    """Whether no closed candle can be expected from ``since`` on: the candle opening then
    closes less than one candle before the source's present (an exchange may publish its
    newest closed candle a moment late). A source without ``present_ms`` is taken at its
    word."""
    present = getattr(source, "present_ms", None)
    now = present(symbol, timeframe) if callable(present) else None
    return now is None or since + 2 * timeframe_ms(timeframe) > now


def _stopped(source: CandleSource, symbol: str, timeframe: str, since: int, end: int) -> str:
    return (
        f"{source.id}: no {symbol} {timeframe} candles since {ms_to_iso(since)} (since={since}) "
        f"although the range runs to {ms_to_iso(end)} and newer candles have closed; fetching "
        f"stopped at {ms_to_iso(since)} (the candles before it are kept)"
    )


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
    columns = [*CANDLE_COLUMNS, "quote_volume"][: max(width, len(CANDLE_COLUMNS))]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ts"] = frame["ts"].astype("int64")
    return frame
