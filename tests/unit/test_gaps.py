import numpy as np

from candlecast.data.gaps import Gap, find_gaps, summarize

HOUR = 3_600_000


def test_gaps_are_found_with_their_size():
    ts = np.array([0, 1, 2, 5, 6, 9]) * HOUR
    gaps = find_gaps(ts, "1h")
    assert gaps == [Gap(3 * HOUR, 5 * HOUR, 2), Gap(7 * HOUR, 9 * HOUR, 2)]
    assert summarize(gaps) == {"gaps": 2, "missing_candles": 4}
    assert gaps[0].describe() == (
        "2 candles missing from 1970-01-01T03:00:00+00:00 to 1970-01-01T05:00:00+00:00"
    )


def test_contiguous_and_tiny_series_have_none():
    assert find_gaps(np.arange(100) * HOUR, "1h") == []
    assert find_gaps(np.array([5 * HOUR]), "1h") == []
