"""The service's workers open Feast with no offline store (``online_only``): the same online
rows as the pipeline's store, without DuckDB and Ibis in the process, and offline calls
refused."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from candlecast.data import ingestion as data
from candlecast.features import featurestore
from tests.helpers import REPO, btc_pair, settings_in

COLUMNS = ["candle_ts", "close", "rsi_14", "ret_1"]

READ = """
import json, sys
from candlecast.features import online
from candlecast.config import PairConfig
from candlecast.settings import get_settings
stream = PairConfig.model_validate_json(sys.argv[1]).stream
store = online.feature_store(get_settings(), read_timeout_s=1.0, online_only={online_only})
row = online.online_features(store, stream, {columns!r})
try:
    store._get_provider().offline_store.pull_all_from_table_or_query(
        store.config, None, [], [], "event_timestamp")
    offline = "answered"
except NotImplementedError:
    offline = "refused"
except Exception as exc:
    offline = type(exc).__name__
loaded = sorted(m for m in ("duckdb", "ibis") if m in sys.modules)
print(json.dumps({{"row": row, "loaded": loaded, "offline": offline}}))
"""


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """Real bundled candles, validated, featurized and materialized to the SQLite online store."""
    home = tmp_path_factory.mktemp("online_only")
    settings, pair = settings_in(home), btc_pair()
    start, day = datetime(2021, 12, 1, tzinfo=UTC), datetime(2022, 1, 20, tzinfo=UTC)
    end = datetime(2022, 1, 21, tzinfo=UTC)
    data.ingest(pair, start, end, settings=settings)
    data.validate(pair, start, end, settings=settings)
    featurestore.write_features(pair, start, end, settings=settings)
    assert featurestore.ensure_applied([pair.timeframe], settings)
    assert featurestore.materialize(pair, day, end, settings).written
    return home, pair


def read(home, pair, online_only: bool) -> dict:
    env = os.environ | {"CANDLECAST_HOME": str(home)}
    script = READ.format(online_only=online_only, columns=COLUMNS)
    done = subprocess.run(
        [sys.executable, "-c", script, pair.model_dump_json()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_online_only_store_reads_the_same_rows_without_the_offline_engine(materialized):
    home, pair = materialized
    lean, full = read(home, pair, True), read(home, pair, False)
    assert lean["row"] == full["row"] and lean["row"]["candle_ts"] is not None
    assert lean["loaded"] == []
    assert full["loaded"] == ["duckdb", "ibis"]  # the check above can fail: DuckDB's store does
    assert lean["offline"] == "refused"
