"""The prediction service follows the pair config: a stream added to the file is resolved
without a restart, and a broken edit keeps the last valid config."""

from candlecast.serving.forecaster import Forecaster
from tests.helpers import BTC_FILE, settings_in

ONE = f"pairs:\n  - {{symbol: BTC/USD, replay_file: {BTC_FILE}, start: 2021-01-01}}\n"
TWO = ONE + "  - {symbol: ETH/BTC, exchange: binance, timeframe: 5m}\n"


def test_a_stream_added_to_the_config_is_resolved_without_a_restart(tmp_path):
    config = tmp_path / "pairs.yaml"
    config.write_text(ONE)
    forecaster = Forecaster(settings_in(tmp_path).model_copy(update={"pairs": config}))
    assert [p.key for p in forecaster.pairs.pairs] == ["replay_btc_usd_1h"]
    config.write_text(TWO)
    assert forecaster.resolve("ETH/BTC").key == "binance_eth_btc_5m"
    assert "binance_eth_btc_5m" in forecaster.status()["streams"]


def test_a_broken_edit_keeps_the_last_valid_config(tmp_path):
    config = tmp_path / "pairs.yaml"
    config.write_text(TWO)
    forecaster = Forecaster(settings_in(tmp_path).model_copy(update={"pairs": config}))
    config.write_text(TWO + "  - {symbol: SOL/USDT, exchange: binance, timefrmae: 1h}\n")
    assert forecaster.resolve("ETH/BTC").key == "binance_eth_btc_5m"
    assert len(forecaster.pairs.pairs) == 2
