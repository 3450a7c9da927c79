import pandas as pd
import pytest

from candlecast.data.store import PartitionedTable

HOUR = 3_600_000


def candles(hours: range, close: float = 1.0) -> pd.DataFrame:
    ts = [h * HOUR for h in hours]
    return pd.DataFrame(
        {"ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": close, "volume": 1.0}
    )


def test_upsert_partitions_by_day_and_is_byte_identical(tmp_path):
    table = PartitionedTable(tmp_path)
    files = table.upsert(candles(range(0, 50)))
    assert [f.name for f in files] == [
        "1970-01-01.parquet",
        "1970-01-02.parquet",
        "1970-01-03.parquet",
    ]
    before = {f: f.read_bytes() for f in files}
    table.upsert(candles(range(0, 50)))
    assert {f: f.read_bytes() for f in files} == before
    assert len(table.read()) == 50


def test_upsert_replaces_rows_by_key(tmp_path):
    table = PartitionedTable(tmp_path)
    table.upsert(candles(range(0, 10)))
    table.upsert(candles(range(5, 15), close=2.0))
    stored = table.read()
    assert stored["ts"].is_unique and len(stored) == 15
    assert stored.set_index("ts").loc[5 * HOUR, "close"] == 2.0
    assert stored.set_index("ts").loc[4 * HOUR, "close"] == 1.0
    assert table.last_key() == 14 * HOUR


def test_read_bounds_are_half_open(tmp_path):
    table = PartitionedTable(tmp_path)
    table.upsert(candles(range(0, 72)))
    got = table.read(24 * HOUR, 48 * HOUR)
    assert got["ts"].min() == 24 * HOUR and got["ts"].max() == 47 * HOUR


def test_duplicate_keys_in_a_batch_are_refused(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        PartitionedTable(tmp_path).upsert(candles([1, 1]))
    assert not list(tmp_path.glob("*.parquet"))


def test_fingerprint_names_the_data_version(tmp_path):
    table = PartitionedTable(tmp_path)
    table.upsert(candles(range(0, 72)))
    version = table.fingerprint()
    table.upsert(candles(range(0, 72)))
    assert table.fingerprint() == version
    assert table.fingerprint(0, 24 * HOUR) != version
    table.upsert(candles(range(30, 31), close=9.0))
    assert table.fingerprint() != version
    assert table.fingerprint(0, 24 * HOUR) == PartitionedTable(tmp_path).fingerprint(0, 24 * HOUR)


def test_dvc_version_of_the_repo_store_comes_from_dvc_lock(tmp_path):
    import yaml

    from candlecast.modeling.training import dvc_version
    from candlecast.settings import REPO_ROOT

    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    outs = lock["stages"]["ingest@replay_btc_usd_1h"]["outs"]
    validated = next(o for o in outs if o["path"].startswith(".candlecast/validated"))
    assert dvc_version(REPO_ROOT / validated["path"]) == {
        "data.dvc_stage": "ingest@replay_btc_usd_1h",
        "data.dvc_md5": validated["md5"],
    }
    assert dvc_version(tmp_path) == {}
