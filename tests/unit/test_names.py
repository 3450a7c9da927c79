"""A stream's identity and the names derived from it."""

import pytest

from candlecast.names import Stream


def test_names_derive_from_the_three_parts():
    stream = Stream("binance", "BTC/USDT", "1h")
    assert stream.key == "binance_btc_usdt_1h"
    assert stream.candles_dag_id == "candles_binance_btc_usdt_1h"
    assert stream.train_dag_id == "train_binance_btc_usdt_1h"
    assert stream.dag_ids == (
        "candles_binance_btc_usdt_1h",
        "train_binance_btc_usdt_1h",
        "monitor_binance_btc_usdt_1h",
    )
    assert stream.retrain_asset_uri == "candlecast://retrain/binance_btc_usdt_1h"
    assert stream.exchange_pool == "exchange_binance"
    assert stream.experiment == "candlecast-binance_btc_usdt_1h"
    assert stream.registered_model == stream.bento_model == "binance_btc_usdt_1h_forecaster"
    assert stream.market_key == "binance:BTC/USDT"
    assert stream.label == "BTC/USDT on binance at 1h"
    assert stream.at("4h") == Stream("binance", "BTC/USDT", "4h")


@pytest.mark.parametrize(
    "stream",
    [
        Stream("binance", "BTC/USDT", "1h"),
        Stream("coinbase", "ETH/BTC", "15m"),
        Stream("replay", "A1/B2", "1d"),
    ],
)
def test_a_key_reads_back_to_its_stream(stream):
    assert Stream.from_key(stream.key) == stream


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("Binance", "BTC/USDT", "1h"), "ccxt-style id"),
        (("binance", "BTCUSDT", "1h"), "BASE/QUOTE"),
        (("binance", "BTC/USDT", "1x"), "unsupported timeframe"),
    ],
)
def test_bad_parts_are_refused(parts, message):
    with pytest.raises(ValueError, match=message):
        Stream(*parts)
