"""A local exchange: serves candle frames through Binance's spot REST API, with faults on demand.

The real ccxt ``binance`` client can be pointed at it (every host in ``urls['api']`` replaced
by :attr:`ExchangeServer.url`) and fetches candles exactly as it would from Binance:
``GET /api/v3/exchangeInfo`` for ``load_markets`` and ``GET /api/v3/klines`` for
``fetch_ohlcv``. Klines are 12-field arrays with prices and volumes as strings, and the
candle that is still open at the server's clock is served with partial values, as Binance does.

Faults (see :data:`FAULTS`) are queued with :meth:`ExchangeServer.inject` and applied to the
next klines requests; every request is recorded, with the fault it got, so tests can check that
a fault was served. A ``timeout`` fault does not race the client's clock: the server holds the
reply until the client hangs up (or the server stops), so the client times out however slow
the machine is, after exactly its own timeout.

It can behave like another exchange's candle endpoint (``history``): at most ``page`` candles
per request (a larger ``limit`` is refused, as Coinbase refuses more than 300), only the
``recent`` most recent candles at all (Kraken's 720: an older ``startTime`` gets the oldest
of those, whatever it asked), and pages newest first (``newest_first``, as Coinbase sends
them).
"""

from __future__ import annotations

import functools
import json
import logging
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from candlecast.data.limits import HistoryLimit
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

#: Fault kinds: HTTP 429 (Retry-After and Binance's -1003 body), HTTP 500 / 503, a reply held
#: back until the client gives up (a stall: the client times out), a page with fewer candles
#: than exist, a 200 whose JSON body is cut short, and a connection dropped in the middle of
#: the body.
FAULTS = ("429", "500", "503", "timeout", "short", "truncated", "disconnect")

MAX_LIMIT, DEFAULT_LIMIT = 1000, 500
_POLL_S = 0.02  # how often a stalled reply looks whether the client hung up or the server stops
_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
_INTERVALS = {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"}
_ERRORS = {
    "limit": (-1130, "Data sent for parameter 'limit' is not valid."),
    "interval": (-1120, "Invalid interval."),
    "symbol": (-1121, "Invalid symbol."),
    "429": (-1003, "Too many requests; current limit of IP is 6000 requests per minute."),
    "500": (-1000, "An unknown error occurred while processing the request."),
    "503": (-1001, "Internal error; unable to process your request. Please try again."),
    "param": (-1100, "Illegal characters found in a parameter."),
}


@dataclass
class _Fault:
    kind: str
    times: int | None  # None: until cleared
    after: int  # klines requests served normally before this fault starts
    options: dict


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    path: str
    params: dict[str, str]
    at: float  # time.monotonic() on arrival
    fault: str | None = None


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False
    cut_connection: bool = False
    request: Request | None = None


def binance_id(symbol: str) -> str:
    """Binance's market id of a unified symbol: ``BTC/USDT`` -> ``BTCUSDT``."""
    return symbol.replace("/", "")


def kline(row, step_ms: int) -> list:
    """A candle ``(ts, open, high, low, close, volume[, quote_volume])`` as Binance's 12-field
    kline; the quote volume defaults to ``volume * close``."""
    ts, open_, high, low, close, volume = (float(v) for v in row[:6])
    quote = float(row[6]) if len(row) > 6 and row[6] == row[6] else volume * close
    price = "{:.8f}".format
    return [
        int(ts), price(open_), price(high), price(low), price(close), price(volume),
        int(ts) + step_ms - 1, price(quote), max(1, int(volume)),
        price(volume / 2), price(quote / 2), "0",
    ]  # fmt: skip


def _partial(row: np.ndarray, fraction: float) -> np.ndarray:
    """The open candle as it stands ``fraction`` of the way through its interval."""
    now = row[1] + (row[4] - row[1]) * fraction
    partial = [row[0], row[1], max(row[1], now), min(row[1], now), now, row[5] * fraction]
    return np.array(partial + [value * fraction for value in row[6:]])


def _market(symbol: str) -> dict:
    """A spot market as ``exchangeInfo`` lists it (the fields ccxt reads, and a few more)."""
    base, quote = symbol.split("/")
    precisions = ("baseAssetPrecision", "quotePrecision", "quoteAssetPrecision")
    return {
        "symbol": binance_id(symbol), "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
        **dict.fromkeys(precisions, 8), "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000",
             "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
    }  # fmt: skip


def _exchange_info(now: int, symbols: list[str]) -> dict:
    weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1}
    return {
        "timezone": "UTC", "serverTime": now, "rateLimits": [weight | {"limit": 6000}],
        "exchangeFilters": [], "symbols": [_market(s) for s in symbols],
    }  # fmt: skip


class ExchangeServer:
    """Binance-compatible candle server on ``127.0.0.1`` (a free port), run in a thread.

    Args:
        candles: ``symbol -> frame`` (served at ``timeframe``) or ``(symbol, timeframe) ->
            frame``; frames have the columns ``ts, open, high, low, close, volume`` and maybe
            ``quote_volume`` (served as Binance's quote asset volume).
        now_ms: the server's clock; candles opening after it are not served, the one open at
            it is served with partial values. ``None``: the real time.
        stall_s: how long a ``timeout`` fault holds its reply at most (it is sent if the
            client is still waiting then). ``None``: until the client hangs up or the server
            stops, so the client always times out, whatever its timeout and the machine's speed.
        history: another exchange's page size and history depth to behave like.
        newest_first: send each page newest candle first.
    """

    def __init__(
        self,
        candles: dict,
        timeframe: str = "1h",
        now_ms: int | None = None,
        stall_s: float | None = None,
        history: HistoryLimit | None = None,
        newest_first: bool = False,
    ) -> None:
        self.history = history or HistoryLimit("binance", page=MAX_LIMIT)
        self.newest_first = newest_first
        self._book: dict[tuple[str, str], np.ndarray] = {}
        self.symbols: list[str] = []
        for key, frame in candles.items():
            symbol, interval = key if isinstance(key, tuple) else (key, timeframe)
            columns = [*_COLUMNS, *(["quote_volume"] if "quote_volume" in frame else [])]
            ordered = frame.sort_values("ts")[columns]
            self._book[(binance_id(symbol), interval)] = ordered.to_numpy(dtype=float)
            self.symbols += [] if symbol in self.symbols else [symbol]
        self.now_ms = now_ms
        self.stall_s = stall_s
        self.requests: list[Request] = []
        #: Requests whose client hung up before their reply was sent (a stall it gave up on).
        self.abandoned: list[Request] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; valid once started."""
        if self._httpd is None:
            raise RuntimeError("exchange server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> ExchangeServer:
        """Bind a free port and serve in a daemon thread."""
        self._stop.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, name="exchange-server", daemon=True).start()
        log.info("exchange server on %s serving %s", self.url, ", ".join(self.symbols))
        return self

    def stop(self) -> None:
        """Stop serving; stalled (``timeout``) requests are released at once, unanswered."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ExchangeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(self, kind: str, times: int | None = 1, *, after: int = 0, **options) -> None:
        """Queue a fault for the next klines requests.

        Args:
            kind: one of :data:`FAULTS`.
            times: how many klines requests it spoils; ``None`` for all until cleared.
            after: how many klines requests are served normally before it starts.
            options: ``retry_after`` (seconds, for 429), ``keep`` (candles a short page keeps;
                default half of them).
        """
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.append(_Fault(kind, times, after, options))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def count(self, path: str = "/api/v3/klines", fault: str | None = None) -> int:
        """Requests made to ``path`` (only those spoilt by ``fault``, if given)."""
        return sum(r.path == path and (fault is None or r.fault == fault) for r in self.requests)

    def next_fault(self, path: str = "/api/v3/klines") -> str | None:
        """The fault the next request to ``path`` will get, if it came now (only klines
        requests get faults)."""
        with self._lock:
            if path != "/api/v3/klines" or not self._faults or self._faults[0].after > 0:
                return None
            return self._faults[0].kind

    def clock_ms(self) -> int:
        """The server's current time in unix ms."""
        return int(time.time() * 1000) if self.now_ms is None else self.now_ms

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            head = self._faults[0]
            if head.after > 0:
                head.after -= 1
                return None
            if head.times is not None:
                head.times -= 1
                if head.times <= 0:
                    self._faults.popleft()
            return head

    def handle(self, path: str, params: dict[str, str]) -> _Reply:
        """Answer one GET request."""
        now = self.clock_ms()
        if path == "/api/v3/klines":
            fault = self._next_fault()
            request = self._record(
                Request(path, params, time.monotonic(), fault.kind if fault else None)
            )
            reply = self._klines(params, now, fault)
            reply.request = request
            return reply
        self._record(Request(path, params, time.monotonic()))
        if path in ("/api/v3/ping", "/api/v3/time"):
            return _json(200, {} if path.endswith("ping") else {"serverTime": now})
        if path in ("/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"):
            spot = path.startswith("/api/")  # futures markets: none, but a valid answer
            return _json(200, _exchange_info(now, self.symbols if spot else []))
        return _json(404, {"code": -1, "msg": f"no such endpoint: {path}"})

    def _record(self, request: Request) -> Request:
        with self._lock:
            self.requests.append(request)
        return request

    def _stall(self, connection: socket.socket, request: Request | None) -> bool:
        """Hold a reply until the client hangs up (``False``: send nothing), the server stops
        (``False``) or :attr:`stall_s` has passed (``True``: send it)."""
        deadline = None if self.stall_s is None else time.monotonic() + self.stall_s
        while not self._stop.is_set():
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return True
            if _closed_by_peer(connection, wait):
                if request is not None:
                    with self._lock:
                        self.abandoned.append(request)
                log.debug("client hung up on a stalled request (%s)", request)
                return False
        return False

    def _klines(self, params: dict[str, str], now: int, fault: _Fault | None) -> _Reply:
        kind = fault.kind if fault else None
        if fault and kind in ("429", "500", "503"):
            reply = _error(kind, status=int(kind))
            if kind == "429":
                reply.headers["Retry-After"] = str(fault.options.get("retry_after", 1))
            return reply
        page = self._page(params, now)
        if isinstance(page, _Reply):
            return page
        if fault and kind == "short":
            page = page[: fault.options.get("keep", len(page) // 2)]
        reply = _json(200, page)
        reply.headers["X-MBX-USED-WEIGHT-1M"] = str(2 * self.count())
        reply.stall = kind == "timeout"
        reply.cut_connection = kind == "disconnect"
        if kind == "truncated":
            reply.body = reply.body[: len(reply.body) // 2]
        return reply

    def _page(self, params: dict[str, str], now: int) -> list | _Reply:
        """Binance's klines for the request, or its error reply."""
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            return _error("param")
        interval = params.get("interval", "")
        if not 1 <= limit <= (self.history.page or MAX_LIMIT):
            return _error("limit")
        if interval not in _INTERVALS:
            return _error("interval")
        symbol = params.get("symbol", "")
        if symbol not in {binance_id(s) for s in self.symbols}:
            return _error("symbol")
        rows = self._book.get((symbol, interval))
        if rows is None:
            return []
        oldest = self.history.oldest_served_ms(interval, now)
        if oldest is not None:  # older candles are not served, whatever the request asks
            rows = rows[rows[:, 0] >= oldest]
        ts = rows[:, 0]
        stop = int(np.searchsorted(ts, min(now, end if end is not None else now), "right"))
        if start is not None:
            first = int(np.searchsorted(ts, start, "left"))
            chosen = rows[first : min(first + limit, stop)]
        else:
            chosen = rows[max(0, stop - limit) : stop]
        step = timeframe_ms(interval)
        page = [kline(row, step) for row in chosen]
        if len(chosen) and chosen[-1, 0] + step > now:  # still open: as it stands now
            page[-1] = kline(_partial(chosen[-1], (now - chosen[-1, 0]) / step), step)
        return page[::-1] if self.newest_first else page


def _closed_by_peer(connection: socket.socket, wait_s: float) -> bool:
    """Whether the client closed (or reset) the connection, waiting at most ``wait_s``."""
    readable, _, _ = select.select([connection], [], [], wait_s)
    if not readable:
        return False
    try:
        if connection.recv(1, socket.MSG_PEEK) == b"":
            return True
    except OSError:  # reset by the client
        return True
    time.sleep(wait_s)  # it sent more (nothing a GET needs): not gone, and no busy loop
    return False


def _json(status: int, payload) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Reply(status, body, {"Content-Type": "application/json;charset=UTF-8"})


def _error(what: str, status: int = 400) -> _Reply:
    code, msg = _ERRORS[what]
    return _json(status, {"code": code, "msg": msg})


def _handler(server: ExchangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            reply = server.handle(parts.path, params)
            if reply.stall and not server._stall(self.connection, reply.request):
                self.close_connection = True
                return
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                body = reply.body[: len(reply.body) // 2] if reply.cut_connection else reply.body
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("client went away before the reply to %s", self.path)

        def log_message(self, format: str, *args) -> None:
            log.debug("exchange server: " + format, *args)

    return Handler
