"""Walk-forward folds: the test window never overlaps or precedes training, the embargo holds,
fold counts and lengths are as specified, and refits see only their own fold's past."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from candlecast.errors import NotEnoughHistoryError
from candlecast.evaluation.walkforward import Fold, predict_out_of_sample, walk_forward

HOUR = pd.Timedelta(hours=1)


def hourly(rows: int, missing: range = range(0)) -> pd.DataFrame:
    """A feature-like frame of hourly rows (``event_timestamp`` as the pipeline writes it),
    with the hours in ``missing`` left out."""
    hours = [h for h in range(rows + len(missing)) if h not in missing]
    stamps = pd.Series(pd.Timestamp("2022-01-01", tz="UTC") + HOUR * np.array(hours))
    return pd.DataFrame({"event_timestamp": stamps.astype("datetime64[us, UTC]"), "x": hours})


def spans(folds: tuple[Fold, ...]) -> list[tuple[int, int, int, int]]:
    """Each fold as (train begin, train end, test begin, test end), half-open."""
    return [(f.train[0], f.train[-1] + 1, f.test[0], f.test[-1] + 1) for f in folds]


def check_fold_invariants(folds, rows, train, test, step, gap, expanding, partial_last):
    step = step or test
    for number, fold in enumerate(folds):
        assert fold.number == number
        assert len(fold.train) > 0 and len(fold.test) > 0
        assert np.all(np.diff(fold.train) == 1) and np.all(np.diff(fold.test) == 1)
        assert not set(fold.train) & set(fold.test)
        assert fold.train.max() + gap < fold.test.min()  # strictly after, embargo between
        assert fold.test.min() - fold.train.max() - 1 == gap  # and not a row more
        assert fold.train.min() >= 0 and fold.test.max() < rows
        if expanding:
            assert fold.train[0] == 0
        else:
            assert len(fold.train) == train
        last = number == len(folds) - 1
        assert len(fold.test) == test or (partial_last and last and fold.test[-1] == rows - 1)
    starts = [fold.test[0] for fold in folds]
    assert starts[0] == train + gap
    assert all(b - a == step for a, b in itertools.pairwise(starts))
    if partial_last:  # no fold dropped: the last reaches the end, or no row is left to test
        assert folds[-1].test[-1] == rows - 1 or starts[-1] + step >= rows
    else:
        assert starts[-1] + step > rows - test


def test_folds_never_overlap_or_look_ahead_over_many_settings():
    checked = 0
    for rows, train, test, step, gap, expanding, partial_last in itertools.product(
        (1, 5, 17, 50, 101), (1, 3, 10), (1, 4, 7), (None, 1, 3, 9), (0, 1, 5), *[(False, True)] * 2
    ):
        try:
            folds = walk_forward(
                rows,
                train=train,
                test=test,
                step=step,
                gap=gap,
                expanding=expanding,
                partial_last=partial_last,
            )
        except NotEnoughHistoryError:
            assert rows < train + gap + (1 if partial_last else test)
            continue
        check_fold_invariants(folds, rows, train, test, step, gap, expanding, partial_last)
        checked += 1
    assert checked > 1400  # most settings fit at least one fold


# train begin, train end, test begin, test end (half-open) of each fold over 100 rows
BOUNDARIES = [
    ({"train": 50, "test": 10}, [(0, 50, 50, 60), (10, 60, 60, 70), (20, 70, 70, 80),
                                 (30, 80, 80, 90), (40, 90, 90, 100)]),
    ({"train": 50, "test": 10, "gap": 5}, [(0, 50, 55, 65), (10, 60, 65, 75), (20, 70, 75, 85),
                                           (30, 80, 85, 95)]),
    ({"train": 50, "test": 10, "gap": 3}, [(0, 50, 53, 63), (10, 60, 63, 73), (20, 70, 73, 83),
                                           (30, 80, 83, 93)]),
    ({"train": 50, "test": 10, "gap": 3, "partial_last": True},
     [(0, 50, 53, 63), (10, 60, 63, 73), (20, 70, 73, 83), (30, 80, 83, 93), (40, 90, 93, 100)]),
    ({"train": 60, "test": 20, "step": 15}, [(0, 60, 60, 80), (15, 75, 75, 95)]),
    ({"train": 60, "test": 20, "step": 10}, [(0, 60, 60, 80), (10, 70, 70, 90),
                                             (20, 80, 80, 100)]),
    ({"train": 70, "test": 10, "step": 15, "expanding": True}, [(0, 70, 70, 80), (0, 85, 85, 95)]),
    ({"train": 90, "test": 10}, [(0, 90, 90, 100)]),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "expected"), BOUNDARIES)
def test_fold_boundaries_for_100_rows(kwargs, expected):
    assert spans(walk_forward(np.zeros((100, 3)), **kwargs)) == expected


def test_expanding_grows_while_rolling_keeps_its_length():
    rolling = walk_forward(100, train=40, test=15)
    expanding = walk_forward(100, train=40, test=15, expanding=True)
    assert [len(f.train) for f in rolling] == [40, 40, 40, 40]
    assert [len(f.train) for f in expanding] == [40, 55, 70, 85]
    assert all(f.train[0] == 0 for f in expanding)
    assert [f.test.tolist() for f in rolling] == [f.test.tolist() for f in expanding]


def test_time_span_equals_rows_on_regular_candles():
    frame = hourly(200)
    by_time = walk_forward(frame, train=timedelta(hours=24), test=12, gap=2)
    by_rows = walk_forward(frame, train=24, test=12, gap=2)
    assert spans(by_time) == spans(by_rows)


def test_time_span_takes_fewer_rows_after_a_hole_in_the_data():
    frame = hourly(100, missing=range(30, 40))  # rows 0-29 are hours 0-29, row 30 is hour 40
    folds = walk_forward(frame, train=timedelta(hours=24), test=10, gap=1)
    stamps = frame["event_timestamp"]
    lengths = [len(f.train) for f in folds]
    assert lengths[:3] == [24, 14, 14]  # windows ending at hours 24, 44 and 54
    assert lengths[-1] == 24
    for fold in folds:
        after = stamps.iloc[fold.train[-1] + 1]  # the first row not trained on
        assert stamps.iloc[fold.train].min() >= after - pd.Timedelta(hours=24)
        if fold.train[0] > 0:  # the window is full: the row before it is too old
            assert stamps.iloc[fold.train[0] - 1] < after - pd.Timedelta(hours=24)


def test_time_span_reads_unix_ms_and_expanding_uses_the_span_as_minimum():
    ts = np.arange(50, dtype=np.int64) * 3_600_000 + 1_600_000_000_000
    folds = walk_forward(np.zeros(50), train=pd.Timedelta(hours=10), test=5, times=ts)
    assert spans(folds)[0] == (0, 10, 10, 15)
    grown = walk_forward(50, train=timedelta(hours=10), test=5, times=ts, expanding=True)
    assert [len(f.train) for f in grown] == list(range(10, 50, 5))[: len(grown)]


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        (10, {"train": 0, "test": 1}, ValueError, "at least 1 row"),
        (10, {"train": 3, "test": 0}, ValueError, "at least 1"),
        (10, {"train": 3, "test": 2, "step": 0}, ValueError, "at least 1"),
        (10, {"train": 3, "test": 2, "gap": -1}, ValueError, "negative"),
        (10, {"train": timedelta(0), "test": 2}, ValueError, "positive"),
        (10, {"train": timedelta(hours=2), "test": 2}, ValueError, "needs times"),
        (10, {"train": 8, "test": 3}, NotEnoughHistoryError, "no walk-forward fold"),
        (10, {"train": 5, "test": 3, "gap": 3}, NotEnoughHistoryError, "no walk-forward fold"),
        (0, {"train": 1, "test": 1}, NotEnoughHistoryError, "0 rows"),
        (3, {"train": 1, "test": 1, "times": [3, 2, 1]}, ValueError, "time order"),
        (3, {"train": 1, "test": 1, "times": [1, 1, 2]}, ValueError, "time order"),
        (3, {"train": 1, "test": 1, "times": [1, 2]}, ValueError, "2 times for 3 rows"),
    ],
)
def test_bad_settings_fail_loudly(data, kwargs, error, message):
    with pytest.raises(error, match=message):
        walk_forward(data, **kwargs)


def test_an_unordered_frame_is_refused():
    frame = hourly(30).iloc[::-1]
    with pytest.raises(ValueError, match="time order"):
        walk_forward(frame, train=10, test=5)


def test_fold_indices_are_read_only():
    fold = walk_forward(20, train=10, test=5)[0]
    with pytest.raises(ValueError, match="read-only"):
        fold.train[0] = 15


class PastOnly:
    """Forecasts each row's feature ``x[:, 0]`` (the row position) times ``scale``, and
    records what it was trained on."""

    made: ClassVar[list[PastOnly]] = []

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.trained_on: np.ndarray | None = None
        PastOnly.made.append(self)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        assert self.trained_on is None, "refit of a used instance"
        self.trained_on = x[:, 0].astype(int)

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.trained_on is not None and self.trained_on.max() < x[:, 0].min()
        return x[:, 0] * self.scale


def test_out_of_sample_forecasts_are_aligned_with_their_targets():
    PastOnly.made.clear()
    rows = 60
    x = np.column_stack([np.arange(rows), np.ones(rows)]).astype(float)
    y = np.arange(rows) * 10.0
    folds = walk_forward(rows, train=20, test=10, gap=2)
    out = predict_out_of_sample(lambda: PastOnly(scale=10.0), x, y, folds)
    assert len(PastOnly.made) == len(folds) == 3  # a fresh model per fold
    assert out.position.tolist() == list(range(22, 52))
    assert out.fold.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    np.testing.assert_array_equal(out.predicted, out.target)
    for model, fold in zip(PastOnly.made, folds, strict=True):
        assert model.trained_on.tolist() == fold.train.tolist()


def test_a_forecast_of_the_wrong_shape_is_refused():
    class Scalar(PastOnly):
        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.zeros(1)

    folds = walk_forward(30, train=10, test=5)
    with pytest.raises(ValueError, match="fold 0: forecast shape"):
        predict_out_of_sample(Scalar, np.zeros((30, 1)), np.zeros(30), folds)
    with pytest.raises(ValueError, match="x has 30 rows but y has 29"):
        predict_out_of_sample(Scalar, np.zeros((30, 1)), np.zeros(29), folds)


@pytest.mark.parametrize("seed", range(12))
def test_time_span_windows_on_irregular_times(seed):
    rng = np.random.default_rng(seed)
    hours = np.cumsum(rng.choice([1, 1, 1, 2, 5], size=300))  # hourly rows with holes
    span = timedelta(hours=int(rng.integers(5, 60)))
    test, gap = int(rng.integers(1, 20)), int(rng.integers(0, 4))
    folds = walk_forward(300, train=span, test=test, gap=gap, times=hours * 3_600_000)
    assert len(folds) > 5
    span_hours = span.total_seconds() / 3600
    assert hours[folds[0].train[-1] + 1] - span_hours >= hours[0]  # the first window is full
    for fold in folds:
        assert fold.train[-1] + gap + 1 == fold.test[0]
        first_untrained = hours[fold.train[-1] + 1]
        assert hours[fold.train[0]] >= first_untrained - span_hours
        if fold.train[0] > 0:
            assert hours[fold.train[0] - 1] < first_untrained - span_hours
