from pathlib import Path

import pytest

from candlecast.config import ConfigError, load_pairs

GOOD = """
pairs:
  - symbol: BTC/USD
    replay_file: candles.csv
    start: 2021-01-01
  - symbol: ETH/BTC
    replay_file: candles.csv
    timeframe: 5m
    start: 2021-01-01T00:00:00Z
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.yaml"
    path.write_text(text)
    return path


def test_valid_config_resolves_files_and_keys(tmp_path):
    config = load_pairs(write(tmp_path, GOOD))
    btc, eth = config.pairs
    assert btc.replay_file == tmp_path / "candles.csv"
    assert (btc.slug, btc.key) == ("BTC_USD", "btc_usd")
    assert btc.start.tzinfo is not None
    assert config.get("eth_btc") is eth
    assert config.get("ETH/BTC").timeframe == "5m"


def test_unknown_key_fails_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="timefrmae"):
        load_pairs(write(tmp_path, GOOD.replace("timeframe: 5m", "timefrmae: 5m")))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("symbol: BTC/USD", "symbol: btcusd", "BASE/QUOTE"),
        ("timeframe: 5m", "timeframe: 5x", "unsupported timeframe"),
        (
            "    replay_file: candles.csv\n    start: 2021-01-01\n",
            "    start: 2021-01-01\n",
            "needs replay_file",
        ),
        ("symbol: ETH/BTC", "symbol: BTC/USD", "listed twice"),
    ],
)
def test_invalid_config_is_rejected(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError, match=message):
        load_pairs(write(tmp_path, GOOD.replace(old, new, 1)))


def test_missing_file_and_unknown_pair(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pairs(tmp_path / "nope.yaml")
    with pytest.raises(KeyError, match="DOGE/USD"):
        load_pairs(write(tmp_path, GOOD)).get("DOGE/USD")


def test_default_config_is_valid():
    config = load_pairs()
    assert [p.symbol for p in config.pairs] == ["BTC/USD"]
    assert config.pairs[0].replay_file.exists()
