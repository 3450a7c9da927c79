"""The production online store: Feast on the local Redis, written and read by candlecast."""

from datetime import UTC, datetime

import pytest
import redis

from candlecast.data import ingestion as data
from candlecast.features import featurestore
from candlecast.timeframes import to_ms
from tests.helpers import btc_pair, settings_in

pytestmark = pytest.mark.integration

REDIS_DB = 15


@pytest.fixture
def redis_settings(tmp_path):
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield settings_in(tmp_path, online_store="redis", redis_url=f"127.0.0.1:6379,db={REDIS_DB}")
    client.flushdb()


def test_materialized_features_are_served_from_redis(redis_settings):
    settings, pair = redis_settings, btc_pair()
    start = datetime(2021, 12, 1, tzinfo=UTC)
    day, end = datetime(2022, 1, 20, tzinfo=UTC), datetime(2022, 1, 21, tzinfo=UTC)
    data.ingest(pair, start, end, settings=settings)
    data.validate(pair, start, end, settings=settings)
    featurestore.write_features(pair, start, end, settings=settings)
    assert featurestore.ensure_applied([pair.timeframe], settings)

    done = featurestore.materialize(pair, day, end, settings)
    assert done.written and done.online_candle_ts == to_ms(end) - 3_600_000
    keys = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).keys("*")
    assert keys, "nothing was written to Redis"

    older_day = (datetime(2022, 1, 10, tzinfo=UTC), datetime(2022, 1, 11, tzinfo=UTC))
    older = featurestore.materialize(pair, *older_day, settings)
    assert older.written is False
    store = featurestore.feature_store(settings)
    online = featurestore.online_features(store, pair.stream, ["candle_ts", "rsi_14"])
    assert online["candle_ts"] == to_ms(end) - 3_600_000
    assert 0 < online["rsi_14"] < 1
