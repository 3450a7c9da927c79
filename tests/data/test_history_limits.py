"""Each exchange's paging and history limits: known to the ingestion (ccxt's metadata, else
the sourced table), and imitated by the local exchange server, which the real ccxt client
fetches from: Kraken's 720 most recent candles, Coinbase's 300 per page, newest first."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from candlecast.data import ingestion
from candlecast.data.exchanges import CcxtSource, RetryPolicy
from candlecast.data.importers import read_history
from candlecast.data.limits import LIMITS, HistoryLimit, check_reach, history_limit
from candlecast.errors import HistoryLimitError
from candlecast.testing.exchange_server import ExchangeServer
from candlecast.timeframes import ms_to_datetime, ms_to_iso
from tests.helpers import BTC_FILE, btc_pair, settings_in

BTC = "BTC/USDT"
HOUR = 3_600_000
IMPORT = "candlecast import-candles --pair BTC/USDT --exchange kraken --timeframe 1h"


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return read_history(BTC_FILE)


def serve(candles: pd.DataFrame, history: HistoryLimit, **options) -> ExchangeServer:
    """The server's clock stands half way through the last bundled candle."""
    now = int(candles["ts"].max()) + HOUR // 2
    return ExchangeServer({BTC: candles}, now_ms=now, history=history, **options)


def client(server: ExchangeServer, history: HistoryLimit) -> CcxtSource:
    return CcxtSource(
        "binance",
        base_url=server.url,
        timeout_ms=30_000,
        clock=server.clock_ms,
        sleep=[].append,
        retry=RetryPolicy(tries=2, backoff_s=0.0),
        history=history,
    )


# --- the table and the decision ------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "page", "recent"),
    [
        ("kraken", 720, 720),
        ("coinbase", 300, None),
        ("binance", 1000, None),
        ("gemini", None, None),
    ],
)
def test_limits_come_from_the_table(exchange, page, recent):
    limit = history_limit(exchange)
    assert (limit.page, limit.recent) == (page, recent)
    assert limit.source or exchange == "gemini"


def test_ccxt_s_page_size_wins_over_the_table():
    assert history_limit("kraken", ccxt_page=500).page == 500
    assert history_limit("kraken", ccxt_page=500).recent == 720


def test_a_live_kraken_source_knows_its_limits():
    source = CcxtSource("kraken")  # no request is made
    assert source.page_limit == 720 and source.history.recent == 720


NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
OLDEST = (NOW // HOUR - 719) * HOUR  # the 720 served count the open candle


@pytest.mark.parametrize(
    ("exchange", "since", "refused"),
    [
        ("kraken", OLDEST, False),
        ("kraken", OLDEST - HOUR, True),
        ("kraken", OLDEST - 1000 * HOUR, True),
        ("binance", OLDEST - 100_000 * HOUR, False),
        ("coinbase", 0, False),
    ],
)
def test_reach_is_checked_before_fetching(exchange, since, refused):
    check = lambda: check_reach(LIMITS[exchange], "BTC/USD", "1h", since, NOW, IMPORT)  # noqa: E731
    if not refused:
        check()
        return
    with pytest.raises(HistoryLimitError) as caught:
        check()
    message = str(caught.value)
    assert "\n" not in message
    assert f"the first missing candle is {ms_to_iso(since)}" in message
    assert f"720 most recent BTC/USD 1h candles (from {ms_to_iso(OLDEST)})" in message
    assert (
        "Kraken's downloadable OHLCVT files" in message and f"`{IMPORT} --file <file>`" in message
    )


# --- against the local exchange server --------------------------------------------------------


def test_the_server_serves_only_kraken_s_recent_candles_whatever_since_asks(candles):
    kraken = LIMITS["kraken"]
    with serve(candles, kraken) as server:
        rows = client(server, kraken).fetch_ohlcv(BTC, "1h", since=int(candles["ts"].iloc[0]))
    newest_closed = int(candles["ts"].max()) - HOUR
    assert len(rows) == 719  # 720 served, the newest still open (the client drops it)
    assert rows[0][0] == newest_closed - 718 * HOUR  # not the candle asked for: a silent hole


def test_a_kraken_backfill_beyond_720_candles_stops_naming_the_bulk_file(tmp_path, candles):
    kraken, settings = LIMITS["kraken"], settings_in(tmp_path)
    pair = btc_pair(symbol=BTC, exchange="kraken", replay_file=None)
    end = ms_to_datetime(int(candles["ts"].max()))
    start = end - timedelta(days=60)
    with serve(candles, kraken) as server, pytest.raises(HistoryLimitError) as caught:
        ingestion.ingest(pair, start, end, source=client(server, kraken), settings=settings)
    message = str(caught.value)
    assert f"the first missing candle is {start.isoformat()}" in message
    assert "Kraken's downloadable OHLCVT files" in message and f"`{IMPORT} --file" in message
    assert server.count() == 0  # nothing fetched, nothing stored
    assert ingestion.raw_table(pair.stream, settings).read().empty


def test_after_importing_the_bulk_file_the_backfill_fetches_the_rest(tmp_path, candles):
    kraken, settings = LIMITS["kraken"], settings_in(tmp_path)
    pair = btc_pair(symbol=BTC, exchange="kraken", replay_file=None)
    end_ms = int(candles["ts"].max())
    start_ms = end_ms - 60 * 24 * HOUR
    oldest = (end_ms // HOUR - 719) * HOUR  # the server's clock is in the last candle
    # Kraken's OHLCVT download of the older part (unix seconds, OHLCV, trade count)
    older = candles[(candles["ts"] >= start_ms) & (candles["ts"] < oldest)]
    bulk = tmp_path / "XBTUSDT_60.csv"
    rows = older.assign(ts=older["ts"] // 1000, trades=1)
    rows[["ts", "open", "high", "low", "close", "volume", "trades"]].to_csv(
        bulk, header=False, index=False
    )
    batch = read_history(bulk, symbol=BTC)
    assert ingestion.import_history(pair, batch, "bulk", settings).success
    with serve(candles, kraken) as server:
        source = client(server, kraken)
        span = (ms_to_datetime(start_ms), ms_to_datetime(end_ms))
        result = ingestion.ingest(pair, *span, source=source, settings=settings)
    assert result.resumed_ms == oldest
    stored = ingestion.raw_table(pair.stream, settings).read(start_ms, end_ms)
    assert stored["ts"].tolist() == list(range(start_ms, end_ms, HOUR))


def test_coinbase_pages_of_300_newest_first_are_fetched_whole(tmp_path, candles):
    coinbase, settings = LIMITS["coinbase"], settings_in(tmp_path)
    pair = btc_pair(symbol=BTC, exchange="coinbase", replay_file=None)
    end_ms = int(candles["ts"].max())
    start_ms = end_ms - 1000 * HOUR
    with serve(candles, coinbase, newest_first=True) as server:
        source = client(server, coinbase)
        span = (ms_to_datetime(start_ms), ms_to_datetime(end_ms))
        ingestion.ingest(pair, *span, source=source, settings=settings)
        limits = [int(r.params["limit"]) for r in server.requests if r.path == "/api/v3/klines"]
    stored = ingestion.raw_table(pair.stream, settings).read(start_ms, end_ms)
    assert stored["ts"].tolist() == list(range(start_ms, end_ms, HOUR))
    assert max(limits) == 300 and len(limits) >= 4


def test_the_server_refuses_a_page_larger_than_coinbase_s(candles):
    with serve(candles, LIMITS["coinbase"]) as server:
        reply = server.handle(
            "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1h", "limit": "301"}
        )
    assert reply.status == 400
