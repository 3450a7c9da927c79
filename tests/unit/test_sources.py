import pandas as pd
import pytest

from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.data.sources import ReplayExchange, fetch_range
from candlecast.errors import SourceError

HOUR = 3_600_000


def frame(n: int, start: int = 0) -> pd.DataFrame:
    ts = [start + i * HOUR for i in range(n)]
    return pd.DataFrame(
        {"ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}
    )[CANDLE_COLUMNS]


def test_replay_pages_like_an_exchange():
    exchange = ReplayExchange({("BTC/USD", "1h"): frame(2500)})
    page = exchange.fetch_ohlcv("BTC/USD", "1h", since=10 * HOUR, limit=5)
    assert [row[0] for row in page] == [h * HOUR for h in range(10, 15)]
    assert len(exchange.fetch_ohlcv("BTC/USD", "1h", since=0)) == exchange.page_limit
    with pytest.raises(SourceError, match="ETH/BTC"):
        exchange.fetch_ohlcv("ETH/BTC", "1h")


def test_replay_never_serves_the_open_candle():
    exchange = ReplayExchange({("BTC/USD", "1h"): frame(100)}, now_ms=50 * HOUR + 10)
    page = exchange.fetch_ohlcv("BTC/USD", "1h", since=40 * HOUR)
    assert page[-1][0] == 49 * HOUR  # the 50h candle is still open at 50h + 10 ms


def test_fetch_range_covers_exactly_the_interval_across_pages():
    exchange = ReplayExchange({("BTC/USD", "1h"): frame(5000)})
    got = fetch_range(exchange, "BTC/USD", "1h", 100 * HOUR, 3100 * HOUR)
    assert got["ts"].tolist() == [h * HOUR for h in range(100, 3100)]
    assert fetch_range(exchange, "BTC/USD", "1h", 6000 * HOUR, 6100 * HOUR).empty


def test_bundled_file_reads_oldest_first_in_ms(btc_candles):
    assert btc_candles["ts"].is_monotonic_increasing
    assert btc_candles["ts"].iloc[0] == 1526364000 * 1000
    assert len(btc_candles) == 33259
