"""The live candle source: the real ccxt ``binance`` client, over real HTTP, against a local
Binance serving the bundled BTC candles (relabelled BTC/USDT), with faults injected."""

import itertools
from datetime import UTC, datetime

import ccxt
import pandas as pd
import pytest

from candlecast import data
from candlecast.exchange_server import ExchangeServer
from candlecast.exchanges import (
    CcxtSource,
    ExchangeUnavailableError,
    RetryPolicy,
    UnsupportedExchangeError,
    make_source,
)
from candlecast.sources import CANDLE_COLUMNS, fetch_range, read_candle_file
from tests.helpers import BTC_FILE, btc_pair, settings_in

BTC = "BTC/USDT"
HOUR = 3_600_000
START = int(datetime(2021, 6, 1, tzinfo=UTC).timestamp() * 1000)
END = START + 3000 * HOUR  # three full binance pages


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return read_candle_file(BTC_FILE)


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


def live(server: ExchangeServer, sleeps: list[float], **options) -> CcxtSource:
    """The binance source pointed at the local server, with tiny backoff recorded, not slept."""
    options = {"retry": RetryPolicy(tries=3, backoff_s=0.01, max_backoff_s=2.0)} | options
    return CcxtSource(
        "binance",
        base_url=server.url,
        timeout_ms=500,
        clock=server.clock_ms,
        sleep=sleeps.append,
        **options,
    )


def expected(candles: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
    """The bundled candles opening in ``[start, end)``, in ccxt's six columns."""
    wanted = candles.loc[(candles["ts"] >= start) & (candles["ts"] < end), CANDLE_COLUMNS]
    return wanted.reset_index(drop=True)


def klines_starts(server: ExchangeServer) -> list[int]:
    return [int(r.params["startTime"]) for r in server.requests if r.path == "/api/v3/klines"]


def test_multi_page_range_equals_the_bundled_candles(server, source, candles):
    fetched = fetch_range(source, BTC, "1h", START, END)

    pd.testing.assert_frame_equal(fetched, expected(candles, START, END), check_exact=True)
    assert len(fetched) == 3000 and fetched["ts"].is_unique
    assert klines_starts(server) == [START, START + 1000 * HOUR, START + 2000 * HOUR]
    assert {r.params["limit"] for r in server.requests if r.path == "/api/v3/klines"} == {"1000"}
    # Markets are loaded once, spot only, and every call went to the local server.
    assert [r.path for r in server.requests].count("/api/v3/exchangeInfo") == 1
    assert server.count("/fapi/v1/exchangeInfo") == server.count("/dapi/v1/exchangeInfo") == 0
    assert all(url.startswith(server.url) for url in source.exchange.urls["api"].values())
    assert source.page_limit == 1000


def test_the_open_candle_is_never_returned(server, source, candles):
    last = int(candles["ts"].max())
    bare = ccxt.binance({"urls": {"api": source.exchange.urls["api"]}})
    served = bare.fetch_ohlcv(BTC, "1h", since=last - 2 * HOUR)
    assert [row[0] for row in served] == [last - 2 * HOUR, last - HOUR, last]  # served, partial
    assert served[-1][5] == pytest.approx(candles["volume"].iloc[-1] / 2)

    page = source.fetch_ohlcv(BTC, "1h", since=last - 5 * HOUR)
    assert [row[0] for row in page] == [last - 5 * HOUR + i * HOUR for i in range(5)]
    fetched = fetch_range(source, BTC, "1h", last - 48 * HOUR, last + 10 * HOUR)
    pd.testing.assert_frame_equal(fetched, expected(candles, last - 48 * HOUR, last))

    server.now_ms = last + HOUR  # the candle has closed: now it is served whole and returned
    closed = source.fetch_ohlcv(BTC, "1h", since=last - HOUR)
    assert closed == expected(candles, last - HOUR, last + HOUR).to_numpy().tolist()


@pytest.mark.parametrize(
    "kind", ["429", "500", "503", "timeout", "short", "truncated", "disconnect"]
)
def test_each_fault_is_retried_and_the_result_is_exact(server, source, sleeps, candles, kind):
    server.inject(kind, after=1, retry_after=0)  # spoils the request for the second page

    fetched = fetch_range(source, BTC, "1h", START, END)

    pd.testing.assert_frame_equal(fetched, expected(candles, START, END), check_exact=True)
    assert server.count() == 4 and server.count(fault=kind) == 1
    second = START + 1000 * HOUR
    assert klines_starts(server) == [START, second, second, START + 2000 * HOUR]
    assert sleeps == [0.01]


def test_an_empty_page_mid_range_is_asked_again(server, source, candles):
    # fetch_range stops at the first empty page: accepting it would silently lose 2000 candles.
    server.inject("short", after=1, keep=0)
    fetched = fetch_range(source, BTC, "1h", START, END)
    pd.testing.assert_frame_equal(fetched, expected(candles, START, END), check_exact=True)
    assert server.count() == 4 and server.count(fault="short") == 1


def test_persistent_short_pages_are_accepted_and_paging_goes_on(server, sleeps, candles):
    server.inject("short", times=None)  # every page comes back half full
    fetched = fetch_range(live(server, sleeps), BTC, "1h", START, END)
    pd.testing.assert_frame_equal(fetched, expected(candles, START, END), check_exact=True)
    # Six pages of 500, each asked twice (one retry, then the short page is accepted).
    assert server.count() == 12 and sleeps == [0.01] * 6


def test_backoff_doubles_and_honours_retry_after(server, sleeps, candles):
    server.inject("500", times=2)
    server.inject("429", retry_after=1)
    source = live(server, sleeps, retry=RetryPolicy(tries=4, backoff_s=0.01, max_backoff_s=2.0))

    page = source.fetch_ohlcv(BTC, "1h", since=START)

    assert page == expected(candles, START, START + 1000 * HOUR).to_numpy().tolist()
    assert sleeps == [0.01, 0.02, 1.0]
    assert server.count() == 4 and server.count(fault="500") == 2


@pytest.mark.parametrize("kind", ["503", "timeout", "truncated"])
def test_a_persistent_fault_raises_a_clear_error(server, source, sleeps, kind):
    server.inject(kind, times=None, after=1)
    with pytest.raises(ExchangeUnavailableError) as failure:
        fetch_range(source, BTC, "1h", START, END)
    message = str(failure.value)
    second = START + 1000 * HOUR
    for part in ("binance", BTC, " 1h ", f"since={second}", "2021-07-12T16:00:00+00:00", "3 tries"):
        assert part in message
    cause = {"503": "ExchangeNotAvailable", "timeout": "RequestTimeout", "truncated": "BadResponse"}
    assert f"last error: {cause[kind]}" in message
    assert isinstance(failure.value, RuntimeError)
    assert server.count() == 1 + 3 and sleeps == [0.01, 0.02]


def test_other_errors_are_not_retried(server, source, sleeps):
    with pytest.raises(ccxt.BadSymbol, match="ETH/USDT"):
        source.fetch_ohlcv("ETH/USDT", "1h", since=START)
    with pytest.raises(ccxt.BadRequest, match="-1120"):  # binance: invalid interval
        source.fetch_ohlcv(BTC, "7h", since=START)
    assert server.count() == 1 and sleeps == []


def test_requests_are_spaced_by_the_rate_limit(server, sleeps):
    # binance's klines cost 0.4 of rateLimit: 250 ms -> 100 ms between requests (ccxt rounds).
    fetch_range(live(server, sleeps, rate_limit_ms=250), BTC, "1h", START, END)
    arrivals = [r.at for r in server.requests if r.path == "/api/v3/klines"]
    assert len(arrivals) == 3
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.08


def test_failed_ingest_keeps_exact_pages_and_the_rerun_completes(tmp_path, server, source, candles):
    settings = settings_in(tmp_path)
    pair = btc_pair(symbol=BTC, exchange="binance", replay_file=None)
    at = [datetime.fromtimestamp(ms / 1000, UTC) for ms in (START, START + 1000 * HOUR, END)]
    stored = lambda: data.raw_table(pair, settings).read()  # noqa: E731

    data.ingest(pair, at[0], at[1], source=source, settings=settings)
    server.inject("500", times=None, after=1)  # the second run dies after its first page
    with pytest.raises(ExchangeUnavailableError, match="binance: could not fetch BTC/USDT"):
        data.ingest(pair, at[1], at[2], source=source, settings=settings)
    # What was fetched before the failure is stored, exactly; nothing after it.
    pd.testing.assert_frame_equal(stored(), expected(candles, START, START + 2000 * HOUR))
    assert server.count() == 1 + 1 + 3

    server.clear_faults()
    result = data.ingest(pair, at[1], at[2], source=source, settings=settings)

    assert result.rows == 2000 and server.count() == 5 + 2
    pd.testing.assert_frame_equal(stored(), expected(candles, START, END), check_exact=True)


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
