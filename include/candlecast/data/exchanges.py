"""Live candle sources: any ccxt exchange behind the :class:`~candlecast.sources.CandleSource`
protocol, made safe to page through unattended.

:class:`CcxtSource` wraps a real ccxt exchange (``enableRateLimit`` on, so ccxt's throttle
spaces the requests) and adds what a scheduled ingest needs on top of ``fetch_ohlcv``:

* pages of the exchange's own size (``features[...]['fetchOHLCV']['limit']``: binance 1000);
* bounded retries with exponential backoff (``Retry-After`` honoured) for everything that may
  work on a second try: ccxt's ``OperationFailed`` family (network errors, timeouts, rate
  limits, bad responses), any HTTP 5xx (ccxt maps some, e.g. binance's ``-1001`` body, to a
  plain ``ExchangeError``), a 2xx body that is cut-off JSON (ccxt would return it as an
  empty candle list) and a connection dropped mid-body;
* a page with fewer candles than the exchange holds (it neither is full nor reaches the
  newest candle) is asked for again, ``RetryPolicy.short_page_retries`` times, before it is
  accepted as what the exchange has; an empty page where closed candles should exist is
  never accepted: it is asked for again until the tries run out;
* the candle that is still open at the exchange clock is never returned.

When the tries run out, :class:`ExchangeUnavailableError` names exchange, symbol, timeframe,
``since`` and the last cause.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ccxt
import requests

from candlecast.data.limits import HistoryLimit, history_limit
from candlecast.errors import ExchangeUnavailableError, ShortPageError, UnsupportedExchangeError
from candlecast.timeframes import ms_to_iso, timeframe_ms

log = logging.getLogger(__name__)

#: Options a candle source sets on some exchanges: binance loads spot markets only (one
#: ``exchangeInfo`` request instead of spot, USD-M and COIN-M ones).
DEFAULT_OPTIONS: dict[str, dict] = {"binance": {"fetchMarkets": {"types": ["spot"]}}}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a page is asked for.

    ``tries`` counts every request for one page; the wait before try ``n + 1`` is
    ``backoff_s * 2 ** (n - 1)``, at least the exchange's ``Retry-After``, at most
    ``max_backoff_s``.
    """

    tries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    short_page_retries: int = 1

    def __post_init__(self) -> None:
        if self.tries < 1 or self.short_page_retries < 0 or self.backoff_s < 0:
            raise ValueError(f"invalid retry policy {self}: tries >= 1, no negative values")

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        wait = max(self.backoff_s * 2 ** (attempt - 1), retry_after_s or 0.0)
        return min(wait, self.max_backoff_s)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request may succeed when repeated."""
    if isinstance(exc, ccxt.OperationFailed | ShortPageError):
        return True
    # ccxt reports some transport failures (a body cut off mid-read) as a bare ExchangeError.
    return isinstance(exc, ccxt.ExchangeError) and isinstance(
        exc.__cause__, requests.RequestException
    )


def _unparsed_json(response: object, body: str | None) -> bool:
    """A body that looks like JSON but did not parse (ccxt would hand back the raw text)."""
    return response is None and (body or "").lstrip()[:1] in ("[", "{")


@functools.cache
def exchange_class(exchange_id: str) -> type:
    """The ccxt class of ``exchange_id``, with HTTP 5xx and cut-off JSON made retryable.

    Raises:
        UnsupportedExchangeError: not a ccxt exchange id.
    """
    if exchange_id not in ccxt.exchanges:
        raise UnsupportedExchangeError(
            f"unknown exchange {exchange_id!r}: not a ccxt exchange id "
            "(e.g. binance, kraken, coinbase; see ccxt.exchanges)"
        )
    base: Any = getattr(ccxt, exchange_id)

    class Resilient(base):
        def handle_errors(self, code, reason, url, method, headers, body, response, *rest):
            status = code or 0
            if status >= 500:
                raise ccxt.ExchangeNotAvailable(
                    f"{self.id} {method} {url} {status} {reason} {(body or '')[:200]}"
                )
            if 200 <= status < 300 and _unparsed_json(response, body):
                raise ccxt.BadResponse(
                    f"{self.id} {method} {url}: body is not valid JSON ({len(body)} chars)"
                )
            return super().handle_errors(code, reason, url, method, headers, body, response, *rest)

    Resilient.__name__ = Resilient.__qualname__ = base.__name__
    return Resilient


def point_at(exchange: ccxt.Exchange, base_url: str) -> None:
    """Send every API call of ``exchange`` to ``base_url``: the scheme and host of each url in
    ``exchange.urls['api']`` are replaced, its path kept (``/api/v3``, ``/fapi/v1``, ...)."""

    def moved(value):
        if isinstance(value, dict):
            return {key: moved(item) for key, item in value.items()}
        if isinstance(value, str) and "://" in value:
            parts = urlsplit(value)
            return base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        return value

    exchange.urls["api"] = moved(exchange.urls["api"])


def ohlcv_page_limit(exchange: ccxt.Exchange) -> int | None:
    """Most candles one ``fetch_ohlcv`` call returns (ccxt's ``features``, spot first)."""
    features = exchange.features or {}
    for section in (features.get("spot"), *features.values()):
        entries = (section, *section.values()) if isinstance(section, dict) else ()
        for entry in entries:  # a section, or its sub-sections (swap: linear / inverse)
            found = entry.get("fetchOHLCV") if isinstance(entry, dict) else None
            if isinstance(found, dict) and found.get("limit"):
                return int(found["limit"])
    return None


def _checked(rows: object, exchange_id: str) -> list[list[float]]:
    """``fetch_ohlcv`` rows as ``[int ts, o, h, l, c, v]``; anything else is a bad response."""
    if not isinstance(rows, list):
        raise ccxt.BadResponse(f"{exchange_id} returned {type(rows).__name__}, not candles")
    page = []
    for row in rows:
        if not isinstance(row, list | tuple) or len(row) < 6 or None in row[:6]:
            raise ccxt.BadResponse(f"{exchange_id} returned a malformed candle {row!r}")
        page.append([int(row[0]), *(float(v) for v in row[1:6])])
    if any(later[0] <= earlier[0] for earlier, later in itertools.pairwise(page)):
        raise ccxt.BadResponse(f"{exchange_id} returned candles out of order or repeated")
    return page


def _complete(
    page: list[list[float]], since: int | None, limit: int | None, step: int, now: int
) -> bool:
    """Whether a page holds all it should: it is full, or it reaches the newest candle (an
    empty one: no candle after ``since`` has closed a candle before now)."""
    if not page:
        return since is None or since + 2 * step > now
    full = limit is None or len(page) >= limit
    return full or page[-1][0] + 2 * step > now


def _since(ms: int | None) -> str:
    if ms is None:
        return "(latest page)"
    return f"since {ms_to_iso(ms)}"


class CcxtSource:
    """A ccxt exchange as a :class:`~candlecast.sources.CandleSource`.

    Args:
        exchange_id: a ccxt id (``binance``, ``kraken``, ``coinbase``, ...).
        base_url: send every API call there instead (a local exchange server).
        timeout_ms: per-request timeout.
        retry: retry and backoff policy.
        page_limit: candles per request; default the exchange's own maximum.
        clock: unix-ms clock deciding which candle is still open; default the exchange's.
        rate_limit_ms: override ccxt's ``rateLimit`` (ms between unit-cost requests).
        ccxt_options: merged into the exchange's ccxt ``options``.
        sleep: how to wait between tries (tests record instead of sleeping).
        history: the exchange's paging and history limits; default ccxt's page size and the
            rest from :data:`candlecast.data.limits.LIMITS` (a local server imitating another
            exchange's limits passes them).
    """

    def __init__(
        self,
        exchange_id: str,
        *,
        base_url: str | None = None,
        timeout_ms: int = 10_000,
        retry: RetryPolicy | None = None,
        page_limit: int | None = None,
        clock: Callable[[], int] | None = None,
        rate_limit_ms: float | None = None,
        ccxt_options: dict | None = None,
        sleep: Callable[[float], None] = time.sleep,
        history: HistoryLimit | None = None,
    ) -> None:
        merged = DEFAULT_OPTIONS.get(exchange_id, {}) | (ccxt_options or {})
        config = {"enableRateLimit": True, "timeout": timeout_ms, "options": merged}
        self.exchange: ccxt.Exchange = exchange_class(exchange_id)(config)
        if not self.exchange.has.get("fetchOHLCV"):
            raise UnsupportedExchangeError(
                f"exchange {exchange_id!r} has no candle (OHLCV) endpoint in ccxt"
            )
        if base_url is not None:
            point_at(self.exchange, base_url)
        if rate_limit_ms is not None:
            self.exchange.rateLimit = rate_limit_ms
        self.id = exchange_id
        self.history = history or history_limit(exchange_id, ohlcv_page_limit(self.exchange))
        self.page_limit = page_limit or self.history.page
        self.retry = retry or RetryPolicy()
        self.clock = clock or self.exchange.milliseconds
        self._sleep = sleep

    def present_ms(self, symbol: str, timeframe: str) -> int:
        """The exchange's now (every candle closed by then should be served)."""
        return int(self.clock())

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None
    ) -> list[list[float]]:
        """Closed candles from ``since`` on, oldest first, at most one page.

        Raises:
            ExchangeUnavailableError: every try failed (see :class:`RetryPolicy`).
        """
        if self.page_limit is not None:
            limit = min(limit or self.page_limit, self.page_limit)
        shorts, cause = 0, None
        for attempt in range(1, self.retry.tries + 1):
            try:
                last_try = attempt == self.retry.tries
                accept_short = last_try or shorts >= self.retry.short_page_retries
                return self._page(symbol, timeframe, since, limit, accept_short)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                shorts += isinstance(exc, ShortPageError)
                cause = exc
            if attempt < self.retry.tries:
                self._wait(attempt, cause, f"{symbol} {timeframe} {_since(since)}")
        raise ExchangeUnavailableError(
            f"{self.id}: could not fetch {symbol} {timeframe} candles {_since(since)} "
            f"(since={since}) after {self.retry.tries} tries; "
            f"last error: {type(cause).__name__}: {cause}"
        ) from cause

    def _page(
        self, symbol: str, timeframe: str, since: int | None, limit: int | None, accept_short: bool
    ) -> list[list[float]]:
        rows = _checked(self.exchange.fetch_ohlcv(symbol, timeframe, since, limit), self.id)
        step, now = timeframe_ms(timeframe), self.clock()
        if not _complete(rows, since, limit, step, now):
            message = (
                f"{self.id} returned {len(rows)} {symbol} {timeframe} candles "
                f"{_since(since)} (asked {limit}) although newer closed candles should exist"
            )
            # An empty page accepted would end the range as if it were done.
            if not accept_short or not rows:
                raise ShortPageError(message)
            log.warning("%s; accepting it as what the exchange has", message)
        return [row for row in rows if row[0] + step <= now]

    def _wait(self, attempt: int, cause: Exception, what: str) -> None:
        retry_after = None
        if isinstance(cause, ccxt.DDoSProtection):
            headers = self.exchange.last_response_headers or {}
            try:
                retry_after = float(headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        delay = self.retry.delay(attempt, retry_after)
        log.warning(
            "%s %s try %d/%d failed (%s: %s); retrying in %.2fs",
            self.id, what, attempt, self.retry.tries, type(cause).__name__, cause, delay,
        )  # fmt: skip
        self._sleep(delay)


@functools.cache
def served_timeframes(exchange_id: str) -> tuple[str, ...]:
    """The candle timeframes ccxt says the exchange serves (its metadata: no network call);
    empty when ccxt does not say.

    Raises:
        UnsupportedExchangeError: not a ccxt exchange id.
    """
    return tuple(exchange_class(exchange_id)().timeframes or ())


def make_source(exchange_id: str, **options: Any) -> CcxtSource:
    """A live candle source for a ccxt exchange id; ``options`` as for :class:`CcxtSource`.

    Raises:
        UnsupportedExchangeError: unknown id, or an exchange without candles.
    """
    return CcxtSource(exchange_id, **options)
