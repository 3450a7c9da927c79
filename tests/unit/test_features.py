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
