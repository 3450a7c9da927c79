"""The expectation suite on the bundled real candles, and on copies with one defect each:
an impossible row is refused alone, an oddity is flagged and kept, a broken batch is refused
whole, and so is a batch with more impossible (or odd) rows than its bound."""

import numpy as np
import pandas as pd
import pytest

from candlecast.data.checks import FLAG_BITS, CheckOptions
from candlecast.data.schema import FLAGS
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


def test_unrepairable_volume_mismatch_is_flagged(batch):
    frame = batch.copy()
    frame.loc[4, "quote_volume"] = frame.loc[4, "quote_volume"] * 3
    report = validate_candles(frame, "1h")
    assert report.success and not report.repairs
    assert ("expect_column_values_to_be_between", "quote_vwap_excess", "flag") in {
        (f.expectation, f.column, f.severity) for f in report.findings
    }
    assert report.batch.loc[4, FLAGS] == FLAG_BITS["quote_vwap_excess"]
    assert (report.batch[FLAGS] != 0).sum() == 1


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


#: What each defect does: refuse its rows, flag them (stored), or refuse the batch whole.
SEVERITY = {
    "null close": "batch",  # the corruption makes the column object-typed: a broken file
    "zero price": "refuse",
    "high below close": "refuse",
    "low above open": "refuse",
    "negative volume": "refuse",
    "duplicate timestamp": "refuse",
    "rows out of order": "batch",
    "timestamp off the grid": "refuse",
    "close jumps 60%": "flag",
    "volume spike": "flag",
    "negative quote volume": "refuse",
    "missing column": "batch",
    "prices as strings": "batch",
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_defect_is_found_by_its_expectation(batch, name):
    corrupt, expectation, column = CORRUPTIONS[name]
    report = validate_candles(corrupt(batch.copy()), "1h")
    severity = SEVERITY[name]
    found = {(f.expectation, f.column) for f in [*report.failures, *report.findings]}
    assert (expectation, column) in found, report.summary()
    assert expectation in report.summary()
    assert report.success is (severity != "batch")
    if severity == "refuse":
        rule = f"{expectation} on {column}"
        assert report.refused["rule"].str.contains(rule, regex=False).any()
        assert 1 <= report.refused_rows <= 2 and len(report.batch) == 336 - report.refused_rows
    if severity == "flag":
        assert report.refused_rows == 0 and report.flagged_rows == 1
        assert report.batch[FLAGS].max() & FLAG_BITS[column]


def test_a_refused_row_is_named_and_counted_as_missing_in_the_summary(batch):
    frame = batch.copy()
    frame.loc[12, "volume"] = -3.0
    frame.loc[30, "close"] = np.nan  # an empty cell in a float column: one impossible row
    report = validate_candles(frame, "1h")
    stamp = pd.Timestamp(frame.loc[12, "ts"], unit="ms", tz="UTC").isoformat()
    assert "334 candles passed; 2 refused, counted as missing" in report.summary()
    assert "refused by expect_column_values_to_be_between on volume" in report.summary()
    assert "refused by expect_column_values_to_not_be_null on close" in report.summary()
    assert stamp in report.summary()
    assert report.refused["ts"].tolist() == frame.loc[[12, 30], "ts"].tolist()


def test_more_impossible_rows_than_the_bound_refuse_the_batch_whole(batch):
    frame = batch.copy()
    frame.loc[10:14, "open"] = 0.0  # 5 of 336 rows: 1.5% > 1%
    report = validate_candles(frame, "1h")
    assert not report.success
    assert ("expect_column_values_to_be_between", "open") in {
        (f.expectation, f.column) for f in report.failures
    }
    loose = validate_candles(frame, "1h", CheckOptions(max_refused_share=0.02))
    assert loose.success and loose.refused_rows == 5


def test_a_file_with_swapped_columns_is_refused_whole(batch):
    swapped = batch.copy()
    swapped[["high", "low"]] = swapped[["low", "high"]].to_numpy()
    assert not validate_candles(swapped, "1h").success
    swapped = batch.copy()
    swapped[["close", "volume"]] = swapped[["volume", "close"]].to_numpy()
    report = validate_candles(swapped, "1h")
    assert not report.success and report.batch is not None


def test_more_odd_rows_than_the_bound_refuse_the_batch_whole(batch):
    frame = batch.copy()
    frame["quote_volume"] = frame["quote_volume"] * 3  # every VWAP outside its candle
    report = validate_candles(frame, "1h")
    assert not report.success
    assert ("expect_column_values_to_be_between", "quote_vwap_excess") in {
        (f.expectation, f.column) for f in report.failures
    }


def test_exact_repeats_are_dropped_and_conflicting_ones_refused(batch):
    repeated = pd.concat([batch, batch.iloc[[20]]]).sort_values("ts", kind="stable")
    report = validate_candles(repeated.reset_index(drop=True), "1h")
    assert report.success and report.repairs == {"exact_duplicate_rows": 1}
    assert report.refused_rows == 0 and len(report.batch) == 336
    conflicting = pd.concat([batch, batch.iloc[[20]].assign(close=lambda f: f["close"] + 1)])
    report = validate_candles(conflicting.sort_values("ts", kind="stable"), "1h")
    assert report.success and report.refused_rows == 2 and len(report.batch) == 335


def test_failure_names_the_offending_row(batch):
    frame = batch.copy()
    frame.loc[9, "low"] = frame.loc[9, "close"] * 2
    report = validate_candles(frame, "1h")
    stamp = pd.Timestamp(frame.loc[9, "ts"], unit="ms", tz="UTC").isoformat()
    assert stamp in report.summary()


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h"])
def test_the_suite_holds_each_expectation_once(timeframe):
    # build_suite hands GE the expectations whole, past its set-like add_expectation: they
    # must be distinct by construction (with quote volume and the freshness check too)
    import great_expectations as gx

    from candlecast.data.checks import build_suite
    from candlecast.data.schema import CANDLE_COLUMNS

    columns = [*CANDLE_COLUMNS, "quote_volume"]
    options = CheckOptions(max_staleness_candles=3, as_of_ms=1_700_000_000_000)
    suite = build_suite(timeframe, columns, options, rows=288)
    same = gx.ExpectationSuite._expectations_are_equalish
    expectations = suite.expectations
    assert len(expectations) > 20
    assert not [
        (a.expectation_type, b.expectation_type)
        for i, a in enumerate(expectations)
        for b in expectations[i + 1 :]
        if same(a, b)
    ]


def _outcome(report):
    rules = [(f.rule, f.severity, f.unexpected_count, f.rows) for f in report.failures]
    found = [(f.rule, f.severity, f.unexpected_count, f.rows) for f in report.findings]
    kept = None if report.batch is None else report.batch.to_dict("list")
    refused = None if report.refused is None else report.refused.to_dict("list")
    return report.success, rules, found, kept, refused, report.summary()


@pytest.mark.parametrize("name", ["clean", *CORRUPTIONS])
def test_a_small_batch_checked_quickly_first_reports_what_the_complete_check_does(
    batch, name, monkeypatch
):
    # a live run's few candles: GE's BASIC result first, COMPLETE only when it finds something
    from candlecast.data import ge_run

    small = batch.head(24).copy()
    frame = small if name == "clean" else CORRUPTIONS[name][0](small)
    assert len(frame) <= ge_run.QUICK_ROWS
    quick = validate_candles(frame.copy(), "1h")
    monkeypatch.setattr(ge_run, "QUICK_ROWS", 0)
    complete = validate_candles(frame.copy(), "1h")
    assert _outcome(quick) == _outcome(complete)
    # a batch with nothing to report keeps GE's BASIC result (no rows listed); one with a
    # finding, COMPLETE's (a spike needs more candles than these to be one)
    listed = any("unexpected_index_list" in r["result"] for r in quick.result["results"])
    assert listed is bool(quick.failures or quick.findings)
    assert listed is (name not in ("clean", "volume spike"))
    assert any("unexpected_index_list" in r["result"] for r in complete.result["results"])
