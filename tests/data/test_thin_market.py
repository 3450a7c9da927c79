"""A real thin market: the bundled 1-minute UNITTEST/BTC series (freqtrade's test data, a real
illiquid market of 2017), where 5% of the minutes traded nothing.

The freqtrade file leaves those minutes out (as Kraken's files do); Binance's publish them as
zero-volume candles at the previous close, which is how :func:`with_quiet_minutes` writes
them. :func:`thinner` makes the market thinner still, from the same real candles: minutes
whose volume is below a quantile (45%, 80%) become minutes without trades (about half the
minutes quiet, as on the Binance.US BTC/USDC market of issue 17, or most of them). A minute
without trades is a fact: the file imports, its odd minutes are flagged and its completeness
and liquidity reported, while a copy with two columns swapped is still refused whole.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.data import ingestion, quality
from candlecast.data.checks import FLAG_BITS
from candlecast.data.importers import read_history
from candlecast.data.schema import FLAGS
from candlecast.errors import CandleValidationError
from tests.helpers import REPO, btc_pair, settings_in

MINUTE = 60_000
FILE = REPO / "data" / "bundled" / "freqtrade" / "UNITTEST_BTC-1m.feather"


def thin_pair(**overrides):
    fields = {"symbol": "UNITTEST/BTC", "exchange": "binance", "timeframe": "1m"}
    return btc_pair(**fields, replay_file=None, **overrides)


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    """The real series, minutes without trades absent."""
    return read_history(FILE)


def with_quiet_minutes(candles: pd.DataFrame) -> pd.DataFrame:
    """Minutes without trades as zero-volume candles at the previous close."""
    grid = np.arange(candles["ts"].iloc[0], candles["ts"].iloc[-1] + MINUTE, MINUTE)
    full = candles.set_index("ts").reindex(grid)
    last_close = full["close"].ffill()
    for column in ("open", "high", "low", "close"):
        full[column] = full[column].fillna(last_close)
    full["volume"] = full["volume"].fillna(0.0)
    return full.rename_axis("ts").reset_index()


def thinner(candles: pd.DataFrame, quantile: float = 0.45) -> pd.DataFrame:
    """``candles`` (gap-free) with the minutes below the volume ``quantile`` made quiet."""
    out = candles.copy()
    quiet = out["volume"] < out.loc[out["volume"] > 0, "volume"].quantile(quantile)
    last_close = out["close"].where(~quiet).ffill().shift(1).bfill()
    for column in ("open", "high", "low", "close"):
        out.loc[quiet, column] = last_close[quiet]
    out.loc[quiet, "volume"] = 0.0
    return out


def test_a_thin_market_imports_with_its_completeness_and_liquidity(tmp_path, published):
    settings, pair = settings_in(tmp_path), thin_pair()
    candles = with_quiet_minutes(published)
    report = ingestion.import_history(pair, candles, "thin", settings)
    assert report.success and report.refused_rows == 0
    assert report.completeness.missing == 0 and len(candles) == 14_398
    assert report.liquidity.zero_volume == 14_398 - 13_681 and not report.liquidity.thin
    assert "warning" not in report.summary()  # quiet minutes alone are no warning
    assert len(ingestion.validated_table(pair.stream, settings).read()) == len(candles)


def test_minutes_absent_from_the_file_count_as_missing(tmp_path, published):
    report = ingestion.import_history(thin_pair(), published, "kraken-like", settings_in(tmp_path))
    assert report.success and report.completeness.missing == 14_398 - 13_681
    assert "5.0% missing (717 of 14398 candles)" in report.summary()


@pytest.mark.parametrize("quantile", [0.45, 0.8])
def test_a_mostly_quiet_market_is_stored_with_a_liquidity_warning(tmp_path, published, quantile):
    settings, pair = settings_in(tmp_path), thin_pair()
    candles = thinner(with_quiet_minutes(published), quantile)
    quiet = (candles["volume"] == 0).mean()
    assert quantile - 0.05 < quiet < quantile + 0.05
    report = ingestion.import_history(pair, candles, "thinner", settings)
    assert report.success and report.refused_rows == 0
    assert f"warning: thin market: {quiet:.1%} of 14398 candles without trades" in report.summary()
    stored = quality.stored_liquidity(pair.stream, settings)
    assert stored is not None and stored.thin


def test_odd_minutes_are_stored_with_their_flag(tmp_path, published):
    settings, pair = settings_in(tmp_path), thin_pair(max_volume_spike=20.0)
    candles = with_quiet_minutes(published)
    report = ingestion.import_history(pair, candles, "flagged", settings)
    assert report.success and report.flagged_rows > 0 and report.refused_rows == 0
    assert "flagged by expect_column_values_to_be_between on volume_spike" in report.summary()
    stored = ingestion.validated_table(pair.stream, settings).read()
    spiked = stored[FLAGS] & FLAG_BITS["volume_spike"] != 0
    assert (
        spiked.sum()
        == report.flagged_rows
        == len(stored)
        - len(
            quality.usable_candles(thin_pair(max_volume_spike=20.0, exclude_flagged=True), stored)
        )
    )
    assert quality.stored_flags(pair.stream, settings) == {"volume_spike": int(spiked.sum())}
    assert len(quality.usable_candles(pair, stored)) == len(stored)  # default: kept


@pytest.mark.parametrize("swap", [("close", "volume"), ("high", "low")])
def test_a_swapped_column_copy_of_the_thin_market_is_refused_whole(tmp_path, published, swap):
    settings, pair = settings_in(tmp_path), thin_pair()
    candles = with_quiet_minutes(published)
    candles[list(swap)] = candles[list(reversed(swap))].to_numpy()
    with pytest.raises(CandleValidationError, match="expectation"):
        ingestion.import_history(pair, candles, "swapped", settings)
    assert ingestion.validated_table(pair.stream, settings).read().empty
    assert ingestion.raw_table(pair.stream, settings).read().empty


def test_kraken_s_own_file_of_a_thin_market_keeps_its_trade_counts(tmp_path):
    """Kraken's OHLCVT of BCH/EUR on 2023-01-01 (built from Kraken's real trades): 78 minutes
    that traded, of the 1,398 the day spans; one trade per candle at the median."""
    settings = settings_in(tmp_path)
    pair = btc_pair(symbol="BCH/EUR", exchange="kraken", timeframe="1m", replay_file=None)
    path = REPO / "tests" / "fixtures" / "importers" / "kraken_ohlcvt_BCHEUR_1.csv"
    report = ingestion.import_history(pair, read_history(path, symbol="BCH/EUR"), "k", settings)
    assert report.success and report.refused_rows == 0
    assert report.completeness.present == 78 and report.completeness.missing > 1_000
    assert report.liquidity.median_trades == 1.0 and report.liquidity.thin
    assert "median 1 trades per candle" in report.summary()
    stored = ingestion.validated_table(pair.stream, settings).read()
    assert stored["trades"].sum() == 148
