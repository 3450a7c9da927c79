import numpy as np
import pytest

from candlecast.features.engineering import FEATURE_COLUMNS, compute_features, next_return


@pytest.fixture(scope="module")
def window(btc_candles):
    return btc_candles[btc_candles["ts"] >= 1640995200000].head(600).reset_index(drop=True)


def test_features_are_complete_and_timestamped_at_close(window):
    rows = compute_features(window, "1h", "replay:BTC/USD")
    assert not rows[FEATURE_COLUMNS].isna().any().any()
    assert (rows["market"] == "replay:BTC/USD").all()
    first = rows.iloc[0]
    assert first["event_timestamp"].value // 10**6 == first["candle_ts"] + 3_600_000


def test_no_lookahead_future_candles_do_not_change_past_features(window):
    full = compute_features(window, "1h", "replay:BTC/USD").set_index("candle_ts")
    cut = 400
    changed = window.copy()
    changed.loc[cut:, ["open", "high", "low", "close"]] *= 3.0
    changed.loc[cut:, "volume"] *= 10
    partial = compute_features(changed, "1h", "replay:BTC/USD").set_index("candle_ts")
    past = full.index[full.index < window["ts"].iloc[cut]]
    np.testing.assert_allclose(
        full.loc[past, FEATURE_COLUMNS].to_numpy(), partial.loc[past, FEATURE_COLUMNS].to_numpy()
    )
    assert not np.allclose(
        full.loc[window["ts"].iloc[cut], FEATURE_COLUMNS].to_numpy(dtype=float),
        partial.loc[window["ts"].iloc[cut], FEATURE_COLUMNS].to_numpy(dtype=float),
    )


def test_target_is_the_next_candles_return_and_skips_gaps(window):
    gapped = window.drop(index=[100]).reset_index(drop=True)
    target = next_return(gapped, "1h")
    assert len(target) == len(gapped) - 2  # the last candle and the one before the gap
    expected = np.log(window["close"].iloc[1] / window["close"].iloc[0])
    assert target["target"].iloc[0] == pytest.approx(expected)
    assert target["event_timestamp"].iloc[0].value // 10**6 == window["ts"].iloc[0] + 3_600_000


def test_windows_never_span_a_gap(window):
    gapped = window.drop(index=range(300, 305)).reset_index(drop=True)
    rows = compute_features(gapped, "1h", "replay:BTC/USD").set_index("candle_ts")
    after = window.iloc[305:].reset_index(drop=True)
    alone = compute_features(after, "1h", "replay:BTC/USD").set_index("candle_ts")
    after_gap = rows.loc[rows.index >= window["ts"].iloc[305]]
    # the same rows as computing the post-gap run on its own: nothing from before the gap
    assert after_gap.index.tolist() == alone.index.tolist()
    np.testing.assert_allclose(
        after_gap[FEATURE_COLUMNS].to_numpy(), alone[FEATURE_COLUMNS].to_numpy()
    )
    assert len(after_gap) < len(after)  # the warm-up after the gap has no rows


def test_higher_timeframes_use_only_candles_closed_by_the_row(btc_candles):
    """Each row carries the 3x and 12x timeframes' features of the newest higher candle that
    had closed by the row's close: changing anything after that candle changes nothing."""
    from candlecast.data.resample import resample
    from candlecast.features.engineering import HIGHER_COLUMNS, MULTI_TIMEFRAME_COLUMNS

    window = btc_candles.iloc[-2000:].reset_index(drop=True)
    rows = compute_features(window, "1h", "replay:BTC/USD").set_index("candle_ts")
    assert list(rows.columns[-len(HIGHER_COLUMNS) :]) == HIGHER_COLUMNS
    assert MULTI_TIMEFRAME_COLUMNS[: len(FEATURE_COLUMNS)] == FEATURE_COLUMNS
    # the row of the candle opening at 05:00 closes at 06:00: the 3h candle 03:00-06:00 has
    # closed (its features are there), the 12h candle 00:00-12:00 has not (the previous one)
    day = window["ts"].iloc[-500] // 86_400_000 * 86_400_000
    row = rows.loc[day + 5 * 3_600_000]
    three = compute_features(resample(window, "1h", "180m"), "180m", "m").set_index("candle_ts")
    assert row["ret_1@x3"] == three.loc[day + 3 * 3_600_000, "ret_1"]
    twelve = compute_features(resample(window, "1h", "720m"), "720m", "m").set_index("candle_ts")
    assert row["rsi_14@x12"] == twelve.loc[day - 12 * 3_600_000, "rsi_14"]
    # no lookahead: rewriting every later candle leaves the row as it was
    changed = window.copy()
    later = changed["ts"] > day + 5 * 3_600_000
    changed.loc[later, ["open", "high", "low", "close"]] *= 1.5
    again = compute_features(changed, "1h", "replay:BTC/USD").set_index("candle_ts")
    assert again.loc[day + 5 * 3_600_000, HIGHER_COLUMNS].equals(row[HIGHER_COLUMNS])


def test_after_a_gap_higher_timeframes_wait_for_a_fresh_higher_candle(btc_candles):
    """A higher candle is used for at most one higher period after it closed: across a gap
    the context is empty (NaN) rather than stale, until a complete higher candle closes."""
    from candlecast.data.resample import resample

    window = btc_candles.iloc[-2000:].reset_index(drop=True)
    hole = window["ts"].iloc[1000] // 43_200_000 * 43_200_000 + 3 * 3_600_000
    gapped = window[(window["ts"] < hole) | (window["ts"] >= hole + 40 * 3_600_000)]
    rows = compute_features(gapped, "1h", "replay:BTC/USD")
    twelve = compute_features(resample(gapped, "1h", "720m"), "720m", "m")
    closes = (twelve["candle_ts"] + 43_200_000).to_numpy()
    checked = 0
    for _, row in rows[rows["candle_ts"] >= hole - 24 * 3_600_000].iterrows():
        at = row["candle_ts"] + 3_600_000  # the row's close
        closed = closes[closes <= at]
        if len(closed) and at - closed[-1] < 43_200_000:
            expected = twelve.loc[closes == closed[-1], "rsi_14"].iloc[0]
            assert row["rsi_14@x12"] == expected
        else:
            assert np.isnan(row["rsi_14@x12"])
            checked += 1
    assert checked > 0  # the gap left rows without a fresh 12h candle
    skipped = rows[(rows["candle_ts"] > hole) & rows["rsi_14@x12"].isna()]
    assert len(skipped) == 0 or skipped["candle_ts"].min() >= hole  # only after the gap
