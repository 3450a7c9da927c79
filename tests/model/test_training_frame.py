"""The point-in-time training set: no feature row ever stands in for a later candle."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from candlecast.data import ingestion as data
from candlecast.data.sources import ReplayExchange
from candlecast.features import featurestore
from candlecast.modeling import training
from candlecast.timeframes import to_ms
from tests.helpers import btc_pair, settings_in

pytestmark = pytest.mark.slow  # trains models in MLflow / reads Feast

HOUR = 3_600_000


def test_training_rows_after_a_gap_wait_for_fresh_features(tmp_path, btc_candles):
    settings, pair = settings_in(tmp_path), btc_pair(min_train_rows=100, train_days=30)
    start, end = datetime(2021, 12, 1, tzinfo=UTC), datetime(2022, 1, 20, tzinfo=UTC)
    hole = (to_ms(datetime(2022, 1, 5, tzinfo=UTC)), to_ms(datetime(2022, 1, 5, 10, tzinfo=UTC)))
    patchy = btc_candles[~btc_candles["ts"].between(hole[0], hole[1] - 1)]
    source = ReplayExchange({("BTC/USD", "1h"): patchy})
    data.ingest(pair, start, end, source=source, settings=settings)
    data.validate(pair, start, end, settings=settings)
    featurestore.write_features(pair, start, end, settings=settings)
    featurestore.ensure_applied([pair.timeframe], settings)

    frame = training.training_frame(pair, end, settings)
    closed = (frame["event_timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1ms")
    assert (frame["candle_ts"] + HOUR == closed).all()
    after_gap = closed[closed > hole[1]]
    # the first rows after the gap come only once the longest window has filled again
    assert after_gap.min() >= hole[1] + 33 * HOUR
    # the candle closing at the gap has no next candle, so no target: the last row before it
    assert closed[closed <= hole[0]].max() == hole[0] - HOUR


def test_a_window_mostly_of_gaps_is_refused_naming_the_shortfall(tmp_path):
    """freqtrade's 1m test file covers 10 days (5% of its minutes missing, in 538 gaps): a
    14-day training window over it is a third empty, and training refuses it by name."""
    from candlecast.data.importers import read_history
    from candlecast.errors import NotEnoughHistoryError
    from tests.helpers import REPO

    settings = settings_in(tmp_path)
    pair = btc_pair(
        symbol="UNITTEST/BTC", exchange="binance", timeframe="1m", replay_file=None, train_days=14
    )
    batch = read_history(REPO / "data" / "bundled" / "freqtrade" / "UNITTEST_BTC-1m.feather")
    report = data.import_history(pair, batch, "import-1m", settings)
    assert "5.0% missing (717 of 14398 candles)" in report.summary()
    start, end = datetime(2017, 11, 1, tzinfo=UTC), datetime(2017, 11, 15, tzinfo=UTC)
    featurestore.write_features(pair, start, end, settings=settings)
    featurestore.ensure_applied([pair.timeframe], settings)
    with pytest.raises(NotEnoughHistoryError) as caught:
        training.training_frame(pair, end, settings)
    message = str(caught.value)
    assert "32.1% missing (6479 of 20160 candles)" in message
    assert "more than data.max_missing_share=20%" in message and "candlecast gaps" in message


def test_a_window_beyond_the_missing_share_is_refused(tmp_path, btc_candles):
    from candlecast.errors import NotEnoughHistoryError

    settings, pair = settings_in(tmp_path), btc_pair(train_days=20, max_missing_share=0.1)
    start, end = datetime(2021, 12, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)
    hours = btc_candles[btc_candles["ts"].between(to_ms(start), to_ms(end) - 1)]
    patchy = hours[(hours["ts"] // HOUR) % 5 != 0]  # every fifth hour missing: 20%
    data.ingest(
        pair, start, end, source=ReplayExchange({("BTC/USD", "1h"): patchy}), settings=settings
    )
    report = data.validate(pair, start, end, settings=settings)
    assert report.completeness.missing_share == pytest.approx(0.2, abs=0.01)
    with pytest.raises(NotEnoughHistoryError, match=r"more than data.max_missing_share=10%"):
        training.training_frame(pair, end, settings)
