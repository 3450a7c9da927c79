"""Drift on the bundled BTC/USD hourly history (2018-05 .. 2022-03), on named periods.

Realized volatility by month (annualized, hourly log returns) picks the periods: October 2018
(0.33) and March 2019 (0.26) are the calmest months of the file, March 2020 (the COVID crash,
1.85) the most volatile, May 2021 (the May crash, 1.32) the next. Windows are 500 candles
(the default ``monitoring.window_candles``).
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from candlecast.features.engineering import FEATURE_COLUMNS
from candlecast.monitoring.check import compare_windows
from candlecast.monitoring.drift import choose_test, data_drift
from tests.helpers import btc_pair

W = timedelta(hours=500)


def span(start: str) -> tuple[datetime, datetime]:
    begin = datetime.fromisoformat(start).replace(tzinfo=UTC)
    return begin, begin + W


@pytest.fixture(scope="module")
def pair():
    return btc_pair(start=datetime(2018, 6, 1))


def drift(pair, candles, reference: str, current: str):
    found, before, after = compare_windows(pair, span(reference), span(current), candles=candles)
    assert len(before) == len(after) == 500  # no gap in these periods
    return found


def test_annualized_volatility_names_the_periods(btc_candles):
    def vol(start: str) -> float:
        begin, end = (int(t.timestamp() * 1000) for t in span(start))
        rows = btc_candles[(btc_candles["ts"] >= begin) & (btc_candles["ts"] < end)]
        return float(np.log(rows["close"]).diff().std() * np.sqrt(24 * 365))

    calm = [vol("2018-10-15"), vol("2018-09-25"), vol("2019-02-20"), vol("2019-03-12")]
    assert max(calm) < 0.5
    assert vol("2020-03-01") > 2.0 and vol("2021-05-05") > 1.2


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("2018-09-25", "2018-10-15"),  # calm autumn 2018, adjacent windows
        ("2019-02-20", "2019-03-12"),  # calm late winter 2019, adjacent windows
    ],
)
def test_two_adjacent_calm_windows_do_not_drift(pair, btc_candles, reference, current):
    found = drift(pair, btc_candles, reference, current)
    assert not found.detected
    assert found.share <= 0.2, found.drifted
    assert len(found.features) == len(FEATURE_COLUMNS)


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("2018-10-15", "2020-03-01"),  # calm October 2018 vs the March 2020 crash
        ("2019-02-20", "2020-03-01"),  # calm March 2019 vs the March 2020 crash
        ("2018-10-15", "2021-05-05"),  # calm October 2018 vs the May 2021 crash
    ],
)
def test_calm_against_volatile_drifts(pair, btc_candles, reference, current):
    found = drift(pair, btc_candles, reference, current)
    assert found.detected
    assert found.share >= 0.6
    # what moved: returns, ranges and volatility, not the calendar
    assert {"ret_1", "range_hl", "volatility_24", "atr_14"} <= set(found.drifted)
    assert not {"hour_sin", "hour_cos"} & set(found.drifted)


def test_the_window_size_gives_few_alarms_between_adjacent_windows(btc_candles, pair):
    """Over the whole file, adjacent 500-candle windows (no change of source or process, only
    crypto's own regime changes) rarely alarm: 7 of 65 pairs (11%) when this was written."""
    from candlecast.modeling.evaluate import evaluation_frame

    rows = evaluation_frame(btc_candles, "1h", "replay:BTC/USD")
    alarms = []
    for start in range(0, len(rows) - 1000, 500):
        before, after = rows.iloc[start : start + 500], rows.iloc[start + 500 : start + 1000]
        alarms.append(data_drift(before, after, FEATURE_COLUMNS).detected)
    assert len(alarms) >= 60
    assert 0 < np.mean(alarms) <= 0.15, np.mean(alarms)


@pytest.mark.parametrize(
    ("n_reference", "n_current", "distinct", "method"),
    [
        (2880, 500, 24, "jensenshannon"),  # hour of day: categorical
        (2880, 500, 3, "jensenshannon"),
        (2880, 500, 25, "wasserstein"),
        (500, 500, 500, "wasserstein"),
        (100, 100, 200, "wasserstein"),
        (99, 500, 500, "ks"),  # a small window: a test, not a noisy distance
        (2880, 50, 50, "ks"),
        (50, 50, 10, "jensenshannon"),
    ],
)
def test_choose_test_by_kind_and_size(n_reference, n_current, distinct, method):
    assert choose_test(n_reference, n_current, distinct).method == method
