"""The pair config: defaults and sections, stream identity, resolution, loud failures."""

from pathlib import Path

import pytest

from candlecast.config import load_pairs
from candlecast.errors import AmbiguousStreamError, ConfigError, UnknownStreamError

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

MANY = """
defaults:
  schedule: "@hourly"
  training: {train_days: 30, params: {lightgbm: {num_leaves: 8}}}
  data: {max_close_step: 0.2}
pairs:
  - {symbol: ETH/BTC, exchange: binance, timeframe: 5m}
  - {symbol: BTC/USDT, exchange: binance, timeframe: 1h}
  - {symbol: BTC/USDT, exchange: binance, timeframe: 4h, training: {train_days: 90}}
  - {symbol: BTC/USDT, exchange: kraken, timeframe: 1h, data: {max_staleness_candles: 6}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.yaml"
    path.write_text(text)
    return path


def test_valid_config_resolves_files_and_keys(tmp_path):
    config = load_pairs(write(tmp_path, GOOD))
    btc, eth = config.pairs
    assert btc.replay_file == tmp_path / "candles.csv"
    assert btc.exchange == "replay"  # a replayed file with no exchange named
    assert (btc.slug, btc.key) == ("BTC_USD", "replay_btc_usd_1h")
    assert btc.start.tzinfo is not None
    assert config.get("eth_btc") is eth
    assert config.get("replay_eth_btc_5m") is eth
    assert config.get("ETH/BTC").timeframe == "5m"


def test_a_pair_is_one_line_and_inherits_the_defaults_section_by_section(tmp_path):
    config = load_pairs(write(tmp_path, MANY))
    eth = config.get("ETH/BTC")
    assert (eth.exchange, eth.timeframe, eth.schedule) == ("binance", "5m", "@hourly")
    assert eth.start is None  # runs from now on
    assert eth.training.train_days == 30 and eth.training.params == {"lightgbm": {"num_leaves": 8}}
    assert eth.data.max_close_step == 0.2 and eth.data.max_staleness_candles == 3
    four_hours = config.resolve("BTC/USDT", timeframe="4h")
    assert four_hours.training.train_days == 90  # the pair's own value wins
    assert four_hours.training.params["lightgbm"]["num_leaves"] == 8  # the rest is inherited
    kraken = config.resolve("BTC/USDT", exchange="kraken")
    assert kraken.data.max_staleness_candles == 6 and kraken.data.max_close_step == 0.2


def test_same_symbol_at_two_timeframes_and_on_two_exchanges_are_distinct_streams(tmp_path):
    config = load_pairs(write(tmp_path, MANY))
    btc = [p for p in config.pairs if p.symbol == "BTC/USDT"]
    derived_names = ("key", "candles_dag_id", "train_dag_id", "experiment", "registered_model")
    for derived in (*derived_names, "bento_model"):
        names = {getattr(p.stream, derived) for p in btc}
        assert len(names) == 3, derived
    assert len({p.stream.candle_dir(tmp_path) for p in btc}) == 3
    assert len({p.stream.feature_dir(tmp_path) for p in btc}) == 3
    assert len({p.stream.model_dir(tmp_path, 1) for p in btc}) == 3
    assert {p.stream.train_dag_id for p in btc} == {
        "train_binance_btc_usdt_1h",
        "train_binance_btc_usdt_4h",
        "train_kraken_btc_usdt_1h",
    }


def test_an_ambiguous_symbol_names_the_candidates(tmp_path):
    config = load_pairs(write(tmp_path, MANY))
    with pytest.raises(AmbiguousStreamError) as caught:
        config.resolve("BTC/USDT")
    assert "binance at 1h" in str(caught.value) and "kraken at 1h" in str(caught.value)
    assert len(caught.value.candidates) == 3
    with pytest.raises(AmbiguousStreamError, match="exchange and timeframe"):
        config.resolve("BTC/USDT", timeframe="1h")
    assert config.resolve("BTC/USDT", "binance", "1h").key == "binance_btc_usdt_1h"
    with pytest.raises(UnknownStreamError, match="configured: "):
        config.resolve("BTC/USDT", "binance", "15m")


def test_an_unconfigured_stream_gets_the_defaults_and_its_config_line(tmp_path):
    config = load_pairs(write(tmp_path, MANY))
    sol = config.adhoc("SOL/USDT", "binance", "15m")
    assert sol.training.train_days == 30 and sol.schedule == "@hourly"
    assert sol.config_line() == "- {symbol: SOL/USDT, exchange: binance, timeframe: 15m}"
    assert config.adhoc("ETH/BTC", "binance", "5m") is config.get("ETH/BTC")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("timeframe: 5m", "timefrmae: 5m"), "timefrmae"),
        (MANY.replace("train_days: 30", "train_dys: 30"), "train_dys"),
        (MANY.replace("data: {max_close", "dta: {max_close"), "dta"),
        ("defaults: {symbol: BTC/USD}\n" + GOOD, "defaults"),
        ("pair:\n  - {symbol: BTC/USD}\n", "unknown top-level keys"),
    ],
)
def test_typos_fail_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_pairs(write(tmp_path, text))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("symbol: BTC/USD", "symbol: btcusd", "BASE/QUOTE"),
        ("timeframe: 5m", "timeframe: 5x", "unsupported timeframe"),
        (
            "    replay_file: candles.csv\n    start: 2021-01-01\n",
            "    start: 2021-01-01\n",
            "exchange",
        ),
        (
            "symbol: ETH/BTC\n    replay_file: candles.csv\n    timeframe: 5m",
            "symbol: BTC/USD\n    replay_file: candles.csv\n    timeframe: 1h",
            "listed twice",
        ),
        ("start: 2021-01-01\n", "start: 2021-01-01\n    exchange: Binance!\n", "ccxt-style id"),
    ],
)
def test_invalid_config_is_rejected(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError, match=message):
        load_pairs(write(tmp_path, GOOD.replace(old, new, 1)))


def test_missing_file_and_unknown_pair(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pairs(tmp_path / "nope.yaml")
    with pytest.raises(UnknownStreamError, match="DOGE/USD"):
        load_pairs(write(tmp_path, GOOD)).get("DOGE/USD")


def test_default_config_has_several_streams_from_bundled_data():
    config = load_pairs()
    assert {(p.symbol, p.timeframe) for p in config.pairs} >= {
        ("BTC/USD", "1h"),
        ("ETH/BTC", "5m"),
        ("LTC/BTC", "5m"),
    }
    for pair in config.pairs:
        assert pair.replay_file is not None and pair.replay_file.exists(), pair.key


def test_a_typo_in_defaults_is_one_line_at_its_own_line_with_the_nearest_key(tmp_path):
    path = write(tmp_path, MANY.replace("train_days: 30", "train_dys: 30"))
    with pytest.raises(ConfigError) as caught:
        load_pairs(path)
    message = str(caught.value)
    assert message == (
        f"{path}:4: defaults.training.train_dys: unknown key 'train_dys'; "
        "did you mean 'train_days'?"
    )


def test_a_typo_in_a_pair_points_at_the_pair_and_its_line(tmp_path):
    path = write(tmp_path, GOOD.replace("timeframe: 5m", "timefrmae: 5m"))
    with pytest.raises(ConfigError) as caught:
        load_pairs(path)
    assert str(caught.value) == (
        f"{path}:8: pairs.1.timefrmae: unknown key 'timefrmae'; did you mean 'timeframe'?"
    )
