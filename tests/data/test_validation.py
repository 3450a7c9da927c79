"""The expectation suite on the bundled real candles, and on copies with one defect each."""

import numpy as np
import pandas as pd
import pytest

from candlecast.data.checks import CheckOptions
from candlecast.data.validation import validate_candles

JAN_2022 = 1640995200000


@pytest.fixture(scope="module")
def batch(btc_candles):
    return btc_candles[btc_candles["ts"] >= JAN_2022].head(24 * 14).reset_index(drop=True)


def test_recent_bundled_candles_pass(batch):
    report = validate_candles(batch, "1h")
    assert report.success, report.summary()
    assert report.rows == 24 * 14


def test_whole_bundled_history_passes_after_counted_volume_repairs(btc_candles):
    report = validate_candles(btc_candles, "1h")
    assert report.success, report.summary()
    # until 2020-10 the file's base and quote volume columns are swapped: repaired, counted
    assert report.repairs == {"swapped_volume_columns": 20143}
    assert "repaired 20143 rows (swapped_volume_columns)" in report.summary()
    repaired = report.batch.set_index("ts")
    assert repaired.loc[1526364000000, "volume"] == 559.93
    assert repaired.loc[1526364000000, "quote_volume"] == 4906603.14


def test_unrepairable_volume_mismatch_fails(batch):
    frame = batch.copy()
    frame.loc[4, "quote_volume"] = frame.loc[4, "quote_volume"] * 3
    report = validate_candles(frame, "1h")
    assert ("expect_column_values_to_be_between", "quote_vwap_excess") in {
        (f.expectation, f.column) for f in report.failures
    }
    assert not report.repairs


def test_stale_batch_fails_freshness(batch):
    as_of = int(batch["ts"].iloc[-1]) + 10 * 3_600_000
    stale = validate_candles(batch, "1h", CheckOptions(max_staleness_candles=3, as_of_ms=as_of))
    assert [f.expectation for f in stale.failures] == ["expect_column_max_to_be_between"]
    fresh = CheckOptions(max_staleness_candles=3, as_of_ms=int(batch["ts"].iloc[-1]) + 3_600_000)
    assert validate_candles(batch, "1h", fresh).success


def _set(column, value, row=5):
    def corrupt(frame):
        frame[column] = frame[column].astype(object) if value is None else frame[column]
        frame.loc[row, column] = value if value is not None else np.nan
        return frame

    return corrupt


def _swap_rows(frame):
    frame.iloc[[3, 4]] = frame.iloc[[4, 3]].to_numpy()
    frame["ts"] = frame["ts"].astype("int64")
    return frame


def _duplicate(frame):
    frame.loc[6, "ts"] = frame.loc[5, "ts"]
    return frame


def _off_grid(frame):
    frame.loc[5, "ts"] = frame.loc[5, "ts"] + 60_000
    return frame


def _string_prices(frame):
    frame["close"] = frame["close"].astype(str)
    return frame


CORRUPTIONS = {
    "null close": (_set("close", None), "expect_column_values_to_not_be_null", "close"),
    "zero price": (_set("open", 0.0), "expect_column_values_to_be_between", "open"),
    "high below close": (
        lambda f: f.assign(high=np.where(f.index == 5, f["close"] - 1, f["high"])),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "high >= close",
    ),
    "low above open": (
        lambda f: f.assign(low=np.where(f.index == 7, f["open"] + 1, f["low"])),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "open >= low",
    ),
    "negative volume": (_set("volume", -1.0), "expect_column_values_to_be_between", "volume"),
    "duplicate timestamp": (_duplicate, "expect_column_values_to_be_unique", "ts"),
    "rows out of order": (_swap_rows, "expect_column_values_to_be_increasing", "ts"),
    "timestamp off the grid": (_off_grid, "expect_column_values_to_be_in_set", "ts_grid_offset"),
    "close jumps 60%": (
        lambda f: f.assign(
            close=np.where(f.index == 8, f["close"] * 1.6, f["close"]),
            high=np.where(f.index == 8, f["close"] * 1.6, f["high"]),
        ),
        "expect_column_values_to_be_between",
        "close_step",
    ),
    "volume spike": (
        lambda f: f.assign(volume=np.where(f.index == 40, f["volume"] * 5000, f["volume"])),
        "expect_column_values_to_be_between",
        "volume_spike",
    ),
    "negative quote volume": (
        _set("quote_volume", -5.0),
        "expect_column_values_to_be_between",
        "quote_volume",
    ),
    "missing column": (
        lambda f: f.drop(columns=["volume"]),
        "expect_table_columns_to_match_ordered_list",
        None,
    ),
    "prices as strings": (_string_prices, "expect_column_values_to_be_of_type", "close"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_defect_fails_its_expectation(batch, name):
    corrupt, expectation, column = CORRUPTIONS[name]
    report = validate_candles(corrupt(batch.copy()), "1h")
    assert not report.success
    failed = {(f.expectation, f.column) for f in report.failures}
    assert (expectation, column) in failed, report.summary()
    assert expectation in report.summary()


def test_failure_names_the_offending_row(batch):
    frame = batch.copy()
    frame.loc[9, "low"] = frame.loc[9, "close"] * 2
    report = validate_candles(frame, "1h")
    stamp = pd.Timestamp(frame.loc[9, "ts"], unit="ms", tz="UTC").isoformat()
    assert stamp in report.summary()
