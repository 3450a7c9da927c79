"""The point-in-time training set: no feature row ever stands in for a later candle."""

from datetime import UTC, datetime

import pandas as pd

from candlecast import data, featurestore, training
from candlecast.sources import ReplayExchange
from candlecast.timeframes import to_ms
from tests.helpers import btc_pair, settings_in

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
