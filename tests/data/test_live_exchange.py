"""The live candle source: the real ccxt ``binance`` client, over real HTTP, against a local
Binance serving the bundled BTC candles (relabelled BTC/USDT), with faults injected.

Independent of machine speed: the client's timeout is generous (:data:`TIMEOUT_MS`) for every
reply, except the ones the server is about to stall, which get :data:`STALLED_TIMEOUT_S`; a
stalled reply is held until the client hangs up, so only injected stalls ever time out and a
stall costs one short timeout however slow the machine is. Backoff is recorded, never slept.
Tests assert outcomes (the candles, the faults served, that retries happened, the backoff, the
error) rather than request counts that one more retry could change.
"""

import itertools
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import ccxt
import pandas as pd
import pytest
from requests.adapters import HTTPAdapter

from candlecast.data import ingestion
from candlecast.data.exchanges import CcxtSource, RetryPolicy, make_source
from candlecast.data.importers import read_history
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.data.sources import fetch_range
from candlecast.errors import ExchangeUnavailableError, UnsupportedExchangeError
from candlecast.testing.exchange_server import ExchangeServer
from tests.helpers import BTC_FILE, btc_pair, settings_in

BTC = "BTC/USDT"
HOUR = 3_600_000
START = int(datetime(2021, 6, 1, tzinfo=UTC).timestamp() * 1000)
SECOND, THIRD = START + 1000 * HOUR, START + 2000 * HOUR
END = START + 3000 * HOUR  # three full binance pages
#: The client's timeout for any reply the server does not stall: far beyond what a loaded
#: machine needs to build and send a page, so nothing else ever times out.
TIMEOUT_MS = 30_000
#: The client's timeout for a reply the server stalls; it only decides how long a stall takes,
#: as the server holds the reply until the client hangs up.
STALLED_TIMEOUT_S = 0.5
BACKOFF = RetryPolicy(tries=3, backoff_s=0.01, max_backoff_s=2.0)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return read_history(BTC_FILE)


@pytest.fixture
def server(candles):
    # The exchange clock stands half way through the last bundled candle: it is still open.
    with ExchangeServer({BTC: candles}, now_ms=int(candles["ts"].max()) + HOUR // 2) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def source(server, sleeps) -> CcxtSource:
    return live(server, sleeps)


class StallTimeouts(HTTPAdapter):
    """Sends each request with :data:`STALLED_TIMEOUT_S` if the server is about to stall it,
    else with the client's own timeout.

    The server's fault queue says which request it stalls next; the prediction is exact as the
    client sends one request at a time and, after a stall, waits until the server has taken
    the stalled request off the queue (it may lag behind a client that gave up)."""

    def __init__(self, server: ExchangeServer) -> None:
        super().__init__()
        self.server = server

    def send(self, request, **kwargs):
        if self.server.next_fault(urlsplit(request.url).path) != "timeout":
            return super().send(request, **kwargs)
        stalled = self.server.count(fault="timeout")
        try:
            return super().send(request, **(kwargs | {"timeout": STALLED_TIMEOUT_S}))
        finally:
            eventually(lambda: self.server.count(fault="timeout") > stalled)


def live(server: ExchangeServer, sleeps: list[float], **options) -> CcxtSource:
    """The binance source pointed at the local server, with tiny backoff recorded, not slept."""
    source = CcxtSource(
        "binance",
        base_url=server.url,
        timeout_ms=TIMEOUT_MS,
        clock=server.clock_ms,
        sleep=sleeps.append,
        **({"retry": BACKOFF} | options),
    )
    source.exchange.session.mount(server.url, StallTimeouts(server))
    return source


def expected(candles: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
    """The bundled candles opening in ``[start, end)``, in ccxt's six columns."""
    wanted = candles.loc[(candles["ts"] >= start) & (candles["ts"] < end), CANDLE_COLUMNS]
    return wanted.reset_index(drop=True)


def klines_starts(server: ExchangeServer) -> list[int]:
    """``startTime`` of every klines request, in arrival order (a retried page repeats)."""
    return [int(r.params["startTime"]) for r in server.requests if r.path == "/api/v3/klines"]


def pages(server: ExchangeServer) -> list[int]:
    """The pages asked for, each once, in the order first asked."""
    return list(dict.fromkeys(klines_starts(server)))


def assert_exact(fetched: pd.DataFrame, candles: pd.DataFrame, start: int, end: int) -> None:
    """Every candle of ``[start, end)``, once each, exactly as the exchange holds it."""
    assert fetched["ts"].is_unique
    pd.testing.assert_frame_equal(fetched, expected(candles, start, end), check_exact=True)


def eventually(check, within_s: float = 60.0) -> None:
    """Wait until ``check()`` holds: for what a server thread notes after the client moved on."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"still not true after {within_s}s"
        time.sleep(0.01)


def test_multi_page_range_equals_the_bundled_candles(server, source, candles):
    fetched = fetch_range(source, BTC, "1h", START, END)

    assert_exact(fetched, candles, START, END)
    assert len(fetched) == 3000
    # Pages of the exchange's own size, in order, none skipped.
    assert pages(server) == [START, SECOND, THIRD]
    assert {r.params["limit"] for r in server.requests if r.path == "/api/v3/klines"} == {"1000"}
    assert source.page_limit == 1000
    # Markets are loaded before the first page and never again, spot only, and every call
    # went to the local server.
    first_page = next(i for i, r in enumerate(server.requests) if r.path == "/api/v3/klines")
    loads = [i for i, r in enumerate(server.requests) if r.path == "/api/v3/exchangeInfo"]
    assert loads and max(loads) < first_page
    assert server.count("/fapi/v1/exchangeInfo") == server.count("/dapi/v1/exchangeInfo") == 0
    assert all(url.startswith(server.url) for url in source.exchange.urls["api"].values())


def test_the_open_candle_is_never_returned(server, source, candles):
    last = int(candles["ts"].max())
    bare = ccxt.binance({"urls": {"api": source.exchange.urls["api"]}, "timeout": TIMEOUT_MS})
    served = bare.fetch_ohlcv(BTC, "1h", since=last - 2 * HOUR)
    assert [row[0] for row in served] == [last - 2 * HOUR, last - HOUR, last]  # served, partial
    assert served[-1][5] == pytest.approx(candles["volume"].iloc[-1] / 2)

    page = source.fetch_ohlcv(BTC, "1h", since=last - 5 * HOUR)
    assert [row[0] for row in page] == [last - 5 * HOUR + i * HOUR for i in range(5)]
    fetched = fetch_range(source, BTC, "1h", last - 48 * HOUR, last + 10 * HOUR)
    assert_exact(fetched, candles, last - 48 * HOUR, last)

    server.now_ms = last + HOUR  # the candle has closed: now it is served whole and returned
    closed = source.fetch_ohlcv(BTC, "1h", since=last - HOUR)
    assert closed == expected(candles, last - HOUR, last + HOUR).to_numpy().tolist()


@pytest.mark.parametrize(
    "kind", ["429", "500", "503", "timeout", "short", "truncated", "disconnect"]
)
def test_each_fault_is_retried_and_the_result_is_exact(server, source, sleeps, candles, kind):
    server.inject(kind, after=1, retry_after=0)  # spoils the first request for the second page

    fetched = fetch_range(source, BTC, "1h", START, END)

    assert_exact(fetched, candles, START, END)
    assert server.count(fault=kind) == 1  # the fault was served
    # The spoilt page was asked for again (a short page accepted would shift every later page)
    # after a backoff, and the paging went on from there.
    assert klines_starts(server).count(SECOND) >= 2 and sleeps and sleeps[0] == 0.01
    assert pages(server) == [START, SECOND, THIRD]
    if kind == "timeout":  # the client gave up on the stalled reply (the server notices soon)
        eventually(lambda: [r.fault for r in server.abandoned] == ["timeout"])


def test_an_empty_page_mid_range_is_asked_again(server, source, candles):
    # fetch_range stops at the first empty page: accepting it would silently lose 2000 candles.
    server.inject("short", after=1, keep=0)

    fetched = fetch_range(source, BTC, "1h", START, END)

    assert_exact(fetched, candles, START, END)
    assert server.count(fault="short") == 1 and klines_starts(server).count(SECOND) >= 2


def test_persistent_short_pages_are_accepted_and_paging_goes_on(server, sleeps, candles):
    server.inject("short", times=None)  # every page comes back half full
    policy = RetryPolicy(tries=5, backoff_s=0.01, short_page_retries=1)

    fetched = fetch_range(live(server, sleeps, retry=policy), BTC, "1h", START, END)

    assert_exact(fetched, candles, START, END)
    # Pages of 500 follow one another; each is asked again once before it is accepted, long
    # before the tries run out.
    assert pages(server) == [START + i * 500 * HOUR for i in range(6)]
    asked = [klines_starts(server).count(start) for start in pages(server)]
    assert all(2 <= times < policy.tries for times in asked), asked
    assert set(sleeps) == {0.01}


def test_backoff_doubles_and_honours_retry_after(server, sleeps, candles):
    server.inject("500", times=2)
    server.inject("429", retry_after=1)  # Retry-After beyond the backoff: it wins
    source = live(server, sleeps, retry=RetryPolicy(tries=4, backoff_s=0.01, max_backoff_s=2.0))

    page = source.fetch_ohlcv(BTC, "1h", since=START)

    assert page == expected(candles, START, SECOND).to_numpy().tolist()
    assert server.count(fault="500") == 2 and server.count(fault="429") == 1
    assert sleeps[:3] == [0.01, 0.02, 1.0]


@pytest.mark.parametrize("kind", ["503", "timeout", "truncated"])
def test_a_persistent_fault_raises_a_clear_error(server, source, sleeps, kind):
    server.inject(kind, times=None, after=1)

    with pytest.raises(ExchangeUnavailableError) as failure:
        fetch_range(source, BTC, "1h", START, END)

    message = str(failure.value)
    for part in ("binance", BTC, " 1h ", f"since={SECOND}", "2021-07-12T16:00:00+00:00", "3 tries"):
        assert part in message
    cause = {"503": "ExchangeNotAvailable", "timeout": "RequestTimeout", "truncated": "BadResponse"}
    assert f"last error: {cause[kind]}" in message
    assert isinstance(failure.value, RuntimeError)
    # Every try for the second page was spoilt, with growing backoff in between.
    assert server.count(fault=kind) == BACKOFF.tries
    assert {int(r.params["startTime"]) for r in server.requests if r.fault} == {SECOND}
    assert sleeps[-2:] == [0.01, 0.02]


def test_other_errors_are_not_retried(server, source, sleeps):
    with pytest.raises(ccxt.BadSymbol, match="ETH/USDT"):
        source.fetch_ohlcv("ETH/USDT", "1h", since=START)
    with pytest.raises(ccxt.BadRequest, match="-1120"):  # binance: invalid interval
        source.fetch_ohlcv(BTC, "7h", since=START)
    assert sleeps == []  # no backoff: nothing was tried again
    assert [r.params["interval"] for r in server.requests if r.path == "/api/v3/klines"] == ["7h"]


def test_requests_are_spaced_by_the_rate_limit(server, sleeps):
    # binance's klines cost 0.4 of rateLimit: 250 ms -> 100 ms between requests (ccxt rounds).
    # A slow machine only spaces them more.
    fetch_range(live(server, sleeps, rate_limit_ms=250), BTC, "1h", START, END)
    arrivals = [r.at for r in server.requests if r.path == "/api/v3/klines"]
    assert len(arrivals) >= 3
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.08


def test_failed_ingest_keeps_exact_pages_and_the_rerun_completes(tmp_path, server, source, candles):
    settings = settings_in(tmp_path)
    pair = btc_pair(symbol=BTC, exchange="binance", replay_file=None)
    at = [datetime.fromtimestamp(ms / 1000, UTC) for ms in (START, SECOND, END)]
    stored = lambda: ingestion.raw_table(pair.stream, settings).read()  # noqa: E731

    first = ingestion.ingest(pair, at[0], at[1], source=source, settings=settings).start_ms
    server.inject("500", times=None, after=1)  # the second run dies after its first page
    with pytest.raises(ExchangeUnavailableError, match="binance: could not fetch BTC/USDT"):
        ingestion.ingest(pair, at[1], at[2], source=source, settings=settings)
    # What was fetched before the failure is stored, exactly; nothing after it.
    assert server.count(fault="500") >= 1
    pd.testing.assert_frame_equal(stored(), expected(candles, first, THIRD), check_exact=True)

    server.clear_faults()
    asked_before = len(klines_starts(server))
    result = ingestion.ingest(pair, at[1], at[2], source=source, settings=settings)

    # The re-run resumes after the stored page: only the third page is asked for.
    assert result.rows == 1000 and result.resumed_ms == THIRD
    assert klines_starts(server)[asked_before:] == [THIRD]
    pd.testing.assert_frame_equal(stored(), expected(candles, first, END), check_exact=True)


@pytest.mark.parametrize(("exchange_id", "page_limit"), [("kraken", 720), ("coinbase", 300)])
def test_make_source_builds_other_exchanges(exchange_id, page_limit):
    source = make_source(exchange_id)
    assert source.id == exchange_id and source.exchange.has["fetchOHLCV"] is True
    assert source.page_limit == page_limit and source.exchange.enableRateLimit is True


def test_unknown_or_candle_less_exchanges_fail_clearly():
    with pytest.raises(UnsupportedExchangeError, match="unknown exchange 'nosuchexchange'"):
        make_source("nosuchexchange")
    with pytest.raises(ValueError, match="exchange 'bitflyer' has no candle"):
        make_source("bitflyer")
