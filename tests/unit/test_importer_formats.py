"""Detection by content against every fixture, and the formats exchanges publish for history:
Kraken's OHLCVT download, Coinbase's API candle pages, and files of trades (Kraken's trades
CSV, freqtrade's trades files), refused as trades or resampled on request."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from candlecast.data.importers import REGISTRY, detect_format, read_history
from candlecast.data.importers._common import Sample, read_payload
from candlecast.errors import HistoryFormatError
from tests.helpers import REPO

FIXTURES = REPO / "tests" / "fixtures" / "importers"
BUNDLED = REPO / "data" / "bundled"
#: How each fixture's name says its format.
PREFIXES = {
    "cdd_": "cryptodatadownload",
    "ft_": "freqtrade-json",
    "kraken_ohlcvt_": "kraken",
    "kraken_trades_": "kraken-trades",
    "coinbase_": "coinbase",
    "binance_": "binance",
    "XRP_ETH-trades": "freqtrade-trades",
}
#: Formats that take what no other claims (any JSON, any CSV with a header).
FALLBACKS = {"freqtrade-json", "csv"}


def fixture_formats() -> dict[Path, str]:
    found = {
        path: next(fmt for prefix, fmt in PREFIXES.items() if path.name.startswith(prefix))
        for path in sorted(FIXTURES.iterdir())
        if path.suffix in (".csv", ".json", ".gz")
    }
    found[BUNDLED / "BTC_USD-Hourly.csv"] = "cryptodatadownload"
    found.update({p: "freqtrade-feather" for p in sorted((BUNDLED / "freqtrade").glob("*"))})
    return found


FIXTURE_FORMATS = fixture_formats()


@pytest.mark.parametrize("path", list(FIXTURE_FORMATS), ids=lambda p: p.name)
def test_every_fixture_is_detected_by_content_as_its_format(path, tmp_path):
    assert detect_format(path) == FIXTURE_FORMATS[path]
    renamed = tmp_path / "history.dat"  # by content: the name says nothing
    renamed.write_bytes(read_payload(path))
    assert detect_format(renamed) == FIXTURE_FORMATS[path]


@pytest.mark.parametrize("path", list(FIXTURE_FORMATS), ids=lambda p: p.name)
def test_no_other_specific_format_claims_a_fixture(path):
    sample = Sample(path, read_payload(path))
    claims = {f.name for f in REGISTRY if f.name not in FALLBACKS and f.detect(sample)}
    assert claims <= {FIXTURE_FORMATS[path]}


def test_every_format_has_a_fixture():
    assert {f.name for f in REGISTRY} - set(FIXTURE_FORMATS.values()) <= {"csv", "parquet"}


def test_kraken_ohlcvt_keeps_trade_counts_and_leaves_quiet_minutes_absent():
    got = read_history(FIXTURES / "kraken_ohlcvt_BCHEUR_1.csv")
    assert list(got.columns) == ["ts", "open", "high", "low", "close", "volume", "trades"]
    assert len(got) == 78 and got["trades"].sum() == 148
    assert got["ts"].iloc[0] == 1672531380_000 and (got["ts"] % 60_000 == 0).all()
    assert got["ts"].diff().max() > 60_000  # minutes without trades are not in the file
    first = got.iloc[3]  # three trades in the minute 2023-01-01T00:45
    assert (first["open"], first["volume"], first["trades"]) == (90.0, 0.65555555, 3.0)


def test_kraken_trades_are_refused_as_trades_in_one_line():
    path = FIXTURES / "kraken_trades_BCHEUR.csv"
    with pytest.raises(HistoryFormatError) as caught:
        read_history(path)
    message = str(caught.value)
    assert "the file holds trades, not candles (kraken-trades: 148 trades" in message
    assert "--from-trades" in message and str(path) in message and "\n" not in message


def test_kraken_trades_resampled_are_kraken_s_own_candles():
    ohlcvt = read_history(FIXTURES / "kraken_ohlcvt_BCHEUR_1.csv")
    resampled = read_history(FIXTURES / "kraken_trades_BCHEUR.csv", from_trades="1m")
    pd.testing.assert_frame_equal(resampled, ohlcvt, check_exact=False, rtol=1e-12)


def test_binance_dump_keeps_quote_volume_and_trades(btc_candles):
    got = read_history(FIXTURES / "binance_BTCUSDT_1h.csv")
    expected = btc_candles.tail(30).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.drop(columns="trades"), expected, check_exact=True)
    assert (got["trades"] == got["ts"] // 3_600_000 % 9973).all()


def test_coinbase_page_reads_newest_first_rows_oldest_first(btc_candles):
    got = read_history(FIXTURES / "coinbase_btc_usd_page.json")
    expected = btc_candles.tail(30).reset_index(drop=True)[got.columns]
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_coinbase_saved_pages_read_as_one_history(tmp_path, btc_candles):
    page = json.loads((FIXTURES / "coinbase_btc_usd_page.json").read_text())
    path = tmp_path / "pages.json"
    path.write_text(json.dumps([page[:10], page[10:]]))
    assert detect_format(path) == "coinbase" and len(read_history(path)) == 30


def test_freqtrade_trades_are_refused_or_resampled():
    path = FIXTURES / "XRP_ETH-trades.json.gz"
    with pytest.raises(HistoryFormatError, match="holds trades, not candles"):
        read_history(path)
    candles = read_history(path, symbol="XRP/ETH", from_trades="5m")
    assert candles["trades"].sum() == 12_477 and (candles["ts"] % 300_000 == 0).all()
    assert (candles["high"] >= candles[["open", "close"]].max(axis=1)).all()
    with pytest.raises(HistoryFormatError, match="the file is for XRP/ETH, not BTC/USD"):
        read_history(path, symbol="BTC/USD", from_trades="5m")


def test_freqtrade_trades_as_parquet_are_told_from_candles(tmp_path):
    rows = json.loads(gzip.decompress((FIXTURES / "XRP_ETH-trades.json.gz").read_bytes()))
    columns = ["timestamp", "id", "type", "side", "price", "amount", "cost"]
    path = tmp_path / "trades.parquet"
    pd.DataFrame(rows, columns=columns).to_parquet(path)
    assert detect_format(path) == "freqtrade-trades"
    assert read_history(path, from_trades="1h")["trades"].sum() == len(rows)
