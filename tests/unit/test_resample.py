"""resample on the bundled freqtrade candles: hand-computed buckets, freqtrade's own 30m
candles, and buckets around gaps and at the edges of the data left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from candlecast.data.importers import read_history
from candlecast.data.resample import resample
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.timeframes import timeframe_ms

FREQTRADE = Path(__file__).resolve().parents[2] / "data" / "bundled" / "freqtrade"


def ms(stamp: str) -> int:
    return pd.Timestamp(stamp, tz="UTC").value // 1_000_000


def stamps(values) -> list[str]:
    return [pd.Timestamp(int(v), unit="ms", tz="UTC").strftime("%m-%d %H:%M") for v in values]


@pytest.fixture(scope="module")
def one_minute() -> pd.DataFrame:
    return read_history(FREQTRADE / "UNITTEST_BTC-1m.feather")


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    return read_history(FREQTRADE / "ETH_BTC-5m.feather")


#: Five 1m candles each (ts, open, high, low, close, volume), copied from UNITTEST_BTC-1m,
#: and the 5m candle they make, aggregated by hand.
HAND_BUCKETS = {
    "2017-11-04 23:20": (
        [
            (1509837600000, 0.00160372, 0.00160372, 0.00160356, 0.00160356, 117.25068418),
            (1509837660000, 0.00160356, 0.00160356, 0.00160086, 0.00160086, 62.45416445),
            (1509837720000, 0.00160086, 0.00160086, 0.0016, 0.0016, 80.23600309),
            (1509837780000, 0.0016, 0.0016, 0.0016, 0.0016, 103.06684176),
            (1509837840000, 0.0016, 0.0016, 0.0016, 0.0016, 35.00973373),
        ],
        (1509837600000, 0.00160372, 0.00160372, 0.0016, 0.0016, 398.01742721),
    ),
    "2017-11-04 23:25": (
        [
            (1509837900000, 0.0016, 0.0016, 0.00159984, 0.00159984, 31.85485231),
            (1509837960000, 0.00160005, 0.00160005, 0.00159795, 0.00159795, 26.61171032),
            (1509838020000, 0.00159795, 0.00159795, 0.00159601, 0.00159601, 3.59315959),
            (1509838080000, 0.00159601, 0.00159601, 0.0015946, 0.0015946, 2.9234879),
            (1509838140000, 0.0015946, 0.0015946, 0.00158752, 0.00158785, 42.44967389),
        ],
        (1509837900000, 0.0016, 0.00160005, 0.00158752, 0.00158785, 107.43288401),
    ),
    "2017-11-12 08:10": (
        [
            (1510474200000, 0.00286768, 0.002869, 0.0028, 0.0028, 3307.0070359),
            (1510474260000, 0.00280845, 0.00284466, 0.00277, 0.00277, 1126.45916951),
            (1510474320000, 0.0027686, 0.00277, 0.0027, 0.00270683, 4273.69062366),
            (1510474380000, 0.00270154, 0.00270154, 0.00259734, 0.00259734, 4232.46423445),
            (1510474440000, 0.002651, 0.00265113, 0.0025169, 0.00255, 4864.02394367),
        ],
        (1510474200000, 0.00286768, 0.002869, 0.0025169, 0.00255, 17803.64500719),
    ),
}


@pytest.mark.parametrize("bucket", list(HAND_BUCKETS))
def test_one_to_five_minutes_by_hand(one_minute, bucket):
    rows, (ts, open_, high, low, close, volume) = HAND_BUCKETS[bucket]
    start = ms(bucket)
    source = one_minute[(one_minute["ts"] >= start) & (one_minute["ts"] < start + 300_000)]
    assert source.shape == (5, 6)
    assert np.allclose(source.to_numpy(), np.array(rows), rtol=1e-15, atol=0)
    got = resample(one_minute, "1m", "5m").set_index("ts").loc[ts]
    assert (got["open"], got["high"], got["low"], got["close"]) == pytest.approx(
        (open_, high, low, close), rel=1e-15
    )
    assert got["volume"] == pytest.approx(volume, rel=1e-12)


def test_one_minute_gaps_leave_most_buckets_out(one_minute):
    """13,681 1m candles over 14,398 minutes: 717 missing, spread over 538 gaps."""
    five = resample(one_minute, "1m", "5m")
    assert len(five) == 2397  # of 2,877 buckets touched
    assert stamps(five["ts"][:3]) == ["11-04 23:20", "11-04 23:25", "11-04 23:45"]
    assert len(resample(one_minute, "1m", "30m")) == 286  # of 480 touched
    assert five.dtypes.astype(str).tolist() == ["int64"] + ["float64"] * 5


def test_five_to_thirty_minutes_matches_freqtrade(eth):
    """UNITTEST_BTC-30m is freqtrade's ETH/BTC at 30m: it overlaps the 5m file for 112 complete
    buckets, equal but for its last candle, which freqtrade stored before it closed."""
    ours = resample(eth, "5m", "30m")
    theirs = read_history(FREQTRADE / "UNITTEST_BTC-30m.feather")
    both = ours.merge(theirs, on="ts", suffixes=("", "_ft"))
    assert (len(both), both["ts"].iloc[0], both["ts"].iloc[-1]) == (
        112,
        ms("2018-01-10 05:00"),
        ms("2018-01-12 12:30"),
    )
    closed = both.iloc[:-1]
    for column in ["open", "high", "low", "close"]:
        assert (closed[column] == closed[f"{column}_ft"]).all(), column
    assert np.allclose(closed["volume"], closed["volume_ft"], rtol=1e-12, atol=0)
    last = both.iloc[-1]
    assert (last["high"], last["close"], last["volume"]) == (0.09101839, 0.09097993, 5049.77943741)
    assert (last["high_ft"], last["close_ft"], last["volume_ft"]) == (0.0893, 0.0888, 902.61078443)
    assert ms("2018-01-10 04:30") not in set(ours["ts"])  # the 5m data starts at 04:55


def test_edges_are_left_out(eth):
    hourly = resample(eth, "5m", "1h")
    assert len(hourly) == 479
    assert stamps(hourly["ts"].iloc[[0, -1]]) == ["01-10 05:00", "01-30 03:00"]
    daily = resample(eth, "5m", "1d")
    assert stamps(daily["ts"].iloc[[0, -1]]) == ["01-11 00:00", "01-29 00:00"]
    assert len(daily) == 19


def test_chain_equals_direct(eth):
    via = resample(resample(resample(eth, "5m", "15m"), "15m", "1h"), "1h", "4h")
    direct = resample(eth, "5m", "4h")
    assert len(direct) == 119
    pd.testing.assert_frame_equal(via, direct, check_exact=False, rtol=1e-13)


def test_buckets_around_single_gaps_are_left_out():
    trx = read_history(FREQTRADE / "TRX_BTC-5m.feather")
    got = set(resample(trx, "5m", "30m")["ts"])
    grid = range(ms("2018-01-10 04:30"), ms("2018-01-30 04:30") + 1, 1_800_000)
    assert stamps(sorted(set(grid) - got)) == [
        "01-10 04:30",  # edge: data starts 04:55
        "01-22 17:00",  # 17:20 missing
        "01-25 18:30",  # 18:35 missing
        "01-26 16:30",  # 16:45 missing
        "01-26 19:00",  # 19:20 missing
        "01-28 16:30",  # 16:40 missing
        "01-28 21:30",  # 21:45 missing
        "01-30 04:30",  # edge: data ends 04:50
    ]


def test_buckets_around_a_long_gap_are_left_out():
    ada = read_history(FREQTRADE / "ADA_BTC-5m.feather")
    got = set(resample(ada, "5m", "1h")["ts"])
    grid = range(ms("2018-01-10 04:00"), ms("2018-01-30 04:00") + 1, 3_600_000)
    missing = stamps(sorted(set(grid) - got))
    assert missing == ["01-10 04:00"] + [f"01-15 {h}:00" for h in range(10, 15)] + ["01-30 04:00"]
    assert len(got) == 474
    assert ms("2018-01-15 00:00") not in set(resample(ada, "5m", "1d")["ts"])


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("5m", "7m", "5m to 7m: the target must be a whole multiple"),
        ("1h", "5m", "1h to 5m: the target must be a whole multiple"),
        ("1h", "90m", "1h to 90m: the target must be a whole multiple"),
        ("5m", "5x", "unsupported timeframe '5x'"),
    ],
)
def test_invalid_timeframe_pairs_raise(eth, source, target, message):
    with pytest.raises(ValueError, match=message):
        resample(eth, source, target)


@pytest.mark.parametrize(("source", "target", "count"), [("15m", "1h", 479), ("4h", "1d", 19)])
def test_valid_timeframe_pairs(eth, source, target, count):
    assert len(resample(resample(eth, "5m", source), source, target)) == count


def test_same_timeframe_keeps_every_candle(eth):
    pd.testing.assert_frame_equal(resample(eth, "5m", "5m"), eth)


def test_empty_input_gives_empty_candles(eth):
    got = resample(eth.head(0), "5m", "1h")
    assert got.empty
    assert list(got.columns) == CANDLE_COLUMNS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(ts=f["ts"].where(f.index != 3, f["ts"] + 60_000)), "off the 5m grid"),
        (lambda f: pd.concat([f, f.iloc[[7]]]), "1 duplicate open times"),
        (lambda f: f.assign(close=f["close"].where(f.index != 2)), "1 null values"),
        (lambda f: f.drop(columns="volume"), r"missing columns \['volume'\]"),
    ],
)
def test_unclean_candles_raise(eth, change, message):
    with pytest.raises(ValueError, match=message):
        resample(change(eth.head(24)), "5m", "1h")


def test_unsorted_input_gives_the_same_result(eth):
    shuffled = eth.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(resample(shuffled, "5m", "1h"), resample(eth, "5m", "1h"))
    assert timeframe_ms("1h") == 12 * timeframe_ms("5m")
