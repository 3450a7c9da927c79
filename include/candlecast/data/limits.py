"""How far back and how many candles at a time each exchange serves.

The page size comes from ccxt's own metadata where it has one (``features[...]
['fetchOHLCV']['limit']``, see :func:`candlecast.data.exchanges.ohlcv_page_limit`), else
from :data:`LIMITS`. How deep the history reaches is in no ccxt field, so it comes from
:data:`LIMITS` alone, with the documentation it was taken from. A range that starts before
the oldest candle an exchange serves is refused before fetching (:func:`check_reach`), with
the first missing candle and the bulk file that holds it, never left as a silent hole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from candlecast.errors import HistoryLimitError
from candlecast.timeframes import ms_to_iso, timeframe_ms


@dataclass(frozen=True)
class HistoryLimit:
    """An exchange's candle endpoint: candles per request (``page``), the most recent
    candles it serves at all (``recent``; None: its whole history), where older history is
    published in bulk (``bulk``), and where these figures come from (``source``)."""

    exchange: str
    page: int | None = None
    recent: int | None = None
    bulk: str = ""
    source: str = ""

    def oldest_served_ms(self, timeframe: str, now_ms: int) -> int | None:
        """Open time of the oldest candle the exchange serves at ``now_ms`` (None: no limit);
        the ``recent`` candles served count the one still open."""
        if self.recent is None:
            return None
        step = timeframe_ms(timeframe)
        return (now_ms // step - self.recent + 1) * step


_KRAKEN_BULK = (
    "Kraken's downloadable OHLCVT files (support.kraken.com/hc/en-us/articles/360047124832, "
    "e.g. XBTUSD_60.csv for 1h)"
)
#: Known limits, with their sources (page sizes agree with ccxt 4.5's metadata).
LIMITS: dict[str, HistoryLimit] = {
    limit.exchange: limit
    for limit in (
        HistoryLimit(
            "kraken",
            page=720,
            recent=720,
            bulk=_KRAKEN_BULK,
            source="Kraken REST API, Get OHLC Data: 'Returns up to 720 of the most recent "
            "entries (older data cannot be retrieved, regardless of the value of since)'",
        ),
        HistoryLimit(
            "coinbase",
            page=300,
            source="Coinbase Exchange API, Get product candles: 'The maximum number of data "
            "points for a single request is 300 candles'",
        ),
        HistoryLimit("coinbaseexchange", page=300, source="as coinbase"),
        HistoryLimit(
            "binance",
            page=1000,
            bulk="Binance's public kline dumps (data.binance.vision)",
            source="Binance Spot API, GET /api/v3/klines: 'limit: Default 500; max 1000'",
        ),
        HistoryLimit(
            "binanceus",
            page=1000,
            source="Binance.US API, GET /api/v3/klines: limit default 500, max 1000",
        ),
    )
}


def history_limit(exchange: str, ccxt_page: int | None = None) -> HistoryLimit:
    """The limits of ``exchange``: the page from ccxt's metadata when given, the rest from
    :data:`LIMITS` (an exchange it does not list: no known limit)."""
    known = LIMITS.get(exchange, HistoryLimit(exchange))
    return replace(known, page=ccxt_page) if ccxt_page else known


def check_reach(
    limit: HistoryLimit, symbol: str, timeframe: str, since_ms: int, now_ms: int, command: str
) -> None:
    """Refuse a fetch from ``since_ms`` that reaches before the oldest candle the exchange
    serves at ``now_ms``.

    Raises:
        HistoryLimitError: one line naming the first missing candle, the oldest served one,
            the bulk file and ``command`` (how to import it).
    """
    oldest = limit.oldest_served_ms(timeframe, now_ms)
    if oldest is None or since_ms >= oldest:
        return
    bulk = limit.bulk or "a bulk history file of the exchange"
    raise HistoryLimitError(
        f"{limit.exchange} serves only the {limit.recent} most recent {symbol} {timeframe} "
        f"candles (from {ms_to_iso(oldest)}); the first missing candle is {ms_to_iso(since_ms)}"
        f": import the history before {ms_to_iso(oldest)} from {bulk} with `{command} --file "
        "<file>`, then run again"
    )
