"""Configs that used to pass ``candlecast pairs`` and then fail at run time (network retries,
hundreds of traceback lines, an overflow) are refused up front with one line naming the key:
a timeframe the exchange does not serve (ccxt's own metadata, no network), a ``replay_file``
that is not there, and an infinite number.
"""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from candlecast.cli.app import app
from candlecast.config import load_pairs
from candlecast.data.sources import check_source, source_for
from candlecast.errors import ConfigError, SourceError, UnsupportedExchangeError
from tests.helpers import BTC_FILE


def config(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "pairs.yaml"
    path.write_text(f"pairs:\n  - {line}\n")
    return path


def pairs_command(path: Path) -> tuple[int, str]:
    env = {"CANDLECAST_HOME": str(path.parent / "home"), "CANDLECAST_PAIRS": str(path)}
    result = CliRunner().invoke(app, ["pairs"], env=env, catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("line", "error", "named"),
    [
        ("{symbol: BTC/USD, exchange: kraken, timeframe: 3m}", UnsupportedExchangeError, "3m"),
        ("{symbol: BTC/USDT, exchange: binance, timeframe: 2m}", UnsupportedExchangeError, "2m"),
        (
            "{symbol: BTC/USD, replay_file: nowhere.csv, timeframe: 1h}",
            SourceError,
            "replay_file",
        ),
    ],
)
def test_a_stream_that_cannot_run_is_refused_by_pairs_and_before_any_fetch(
    tmp_path, line, error, named
):
    path = config(tmp_path, line)
    pair = load_pairs(path).pairs[0]  # valid as a config...
    with pytest.raises(error, match=named) as refused:
        check_source(pair)
    assert "\n" not in str(refused.value) and pair.stream.label in str(refused.value)
    with pytest.raises(error, match=named):
        source_for(pair)  # ...so ingestion stops before its first request
    code, out = pairs_command(path)
    assert code == 1 and named in out and "Traceback" not in out


def test_a_timeframe_the_exchange_serves_passes(tmp_path):
    path = config(tmp_path, "{symbol: BTC/USD, exchange: kraken, timeframe: 4h}")
    check_source(load_pairs(path).pairs[0])
    path = config(tmp_path, f"{{symbol: BTC/USD, replay_file: {BTC_FILE}, timeframe: 1h}}")
    check_source(load_pairs(path).pairs[0])
    code, out = pairs_command(path)
    assert code == 0 and "BTC/USD" in out


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_an_infinite_or_nan_setting_is_refused_naming_the_key(tmp_path, value):
    line = f"{{symbol: BTC/USD, exchange: kraken, training: {{train_days: {value}}}}}"
    with pytest.raises(ConfigError) as refused:
        load_pairs(config(tmp_path, line))
    message = str(refused.value)
    assert "pairs.0.training.train_days" in message and "finite" in message
    assert "\n" not in message
