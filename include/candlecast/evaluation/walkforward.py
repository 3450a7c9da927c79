"""Walk-forward evaluation: refit on the past, forecast the next stretch, step on; never a
random split.

:func:`walk_forward` cuts a time-ordered frame (or array, or a row count) into folds of row
positions. In every fold the test rows come strictly after every training row, with ``gap``
embargoed rows between them (neither trained on nor tested), so a target that overlaps the
next candles cannot leak into training. The training window either rolls (a fixed number of
rows, or a fixed span of time ending just before the first row not trained on) or expands from
the first row. :func:`predict_out_of_sample` refits a fresh forecaster per fold and returns
the out-of-sample forecasts aligned with their targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from candlecast.errors import NotEnoughHistoryError

#: The time column of feature frames (the candle's close time).
TIME_COLUMN = "event_timestamp"
_MS_NS = 1_000_000


class Forecaster(Protocol):
    """What walk-forward needs of a model (every model kind fits it structurally)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> None: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Fold:
    """One refit: train on rows ``train``, forecast rows ``test`` (read-only, ascending,
    contiguous int64 positions; ``test[0] == train[-1] + 1 + gap``)."""

    number: int
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, eq=False)
class OutOfSample:
    """Out-of-sample forecasts in fold order: for each forecast its row ``position``, the
    ``fold`` that made it, the ``target`` and the ``predicted`` value (equal-length arrays)."""

    position: np.ndarray
    fold: np.ndarray
    target: np.ndarray
    predicted: np.ndarray


def walk_forward(
    data: pd.DataFrame | np.ndarray | int,
    *,
    train: int | timedelta,
    test: int,
    step: int | None = None,
    gap: int = 0,
    expanding: bool = False,
    times: Any = None,
    partial_last: bool = False,
) -> tuple[Fold, ...]:
    """Walk-forward folds over ``data`` (rows in time order; an int is a row count).

    Args:
        train: the training window: a row count, or a span of time (``timedelta``, also
            ``pd.Timedelta``): the rows in ``[t - train, t)`` where ``t`` is the time of the
            first row after the window. The first fold starts when a full window exists; with
            ``expanding`` the window is the minimum and training always starts at row 0.
        test: rows forecast per fold.
        step: rows between the starts of consecutive test windows; defaults to ``test`` (each
            row forecast once). A smaller step makes test windows of different folds overlap.
        gap: embargoed rows between the last training row and the first test row.
        expanding: train on every row before the gap instead of a rolling window.
        times: row times (datetimes, or integers as unix ms), needed for a time-span window;
            defaults to the frame's ``event_timestamp`` column. Where known they must increase.
        partial_last: end with a shorter fold when the rows left are fewer than ``test``
            (one fold: the first that reaches the last row).

    Raises:
        ValueError: a non-positive size, a negative gap, missing or unordered times.
        NotEnoughHistoryError: too few rows for a single fold.
    """
    rows = data if isinstance(data, int) else len(data)
    step = test if step is None else step
    _check_sizes(train, test, step, gap)
    first_end, window_begin = _window(train, _row_times(data, times, rows), rows)
    folds: list[Fold] = []
    for start in range(first_end + gap, rows, step):
        stop = min(start + test, rows)
        if stop - start < test and not partial_last:
            break
        end = start - gap
        begin = 0 if expanding else window_begin(end)
        folds.append(_fold(len(folds), begin, end, start, stop))
        if stop == rows:  # later windows would only repeat its tail
            break
    if not folds:
        raise NotEnoughHistoryError(
            f"{rows} rows give no walk-forward fold (train {train}, gap {gap}, test {test})"
        )
    return tuple(folds)


def predict_out_of_sample(
    make_forecaster: Callable[[], Forecaster],
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
) -> OutOfSample:
    """Refit a fresh forecaster (``make_forecaster()``) on each fold's training rows of ``x``
    and ``y`` and forecast its test rows.

    Positions are unique when test windows do not overlap (``step >= test``).

    Raises:
        ValueError: no folds, ``x`` and ``y`` differ in length, or a forecast has the wrong
            shape.
    """
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if not folds:
        raise ValueError("no folds to forecast")
    predictions = []
    for fold in folds:
        model = make_forecaster()
        model.fit(x[fold.train], y[fold.train])
        predicted = np.asarray(model.predict(x[fold.test]), dtype=np.float64)
        if predicted.shape != fold.test.shape:
            raise ValueError(
                f"fold {fold.number}: forecast shape {predicted.shape}, expected {fold.test.shape}"
            )
        predictions.append(predicted)
    position = np.concatenate([fold.test for fold in folds])
    made_by = np.concatenate([np.full(len(fold.test), fold.number, np.int64) for fold in folds])
    return OutOfSample(
        position=_frozen(position),
        fold=_frozen(made_by),
        target=_frozen(y[position]),
        predicted=_frozen(np.concatenate(predictions)),
    )


def _check_sizes(train: int | timedelta, test: int, step: int, gap: int) -> None:
    if isinstance(train, timedelta):
        if train <= timedelta(0):
            raise ValueError(f"training span must be positive, got {train}")
    elif train < 1:
        raise ValueError(f"training window must be at least 1 row, got {train}")
    if test < 1 or step < 1:
        raise ValueError(f"test length and step must be at least 1, got {test} and {step}")
    if gap < 0:
        raise ValueError(f"gap must not be negative, got {gap}")


def _row_times(data: pd.DataFrame | np.ndarray | int, times: Any, rows: int) -> np.ndarray | None:
    """Row times as int64 ns, or None when neither ``times`` nor a time column is given."""
    if times is None and isinstance(data, pd.DataFrame) and TIME_COLUMN in data.columns:
        times = data[TIME_COLUMN]
    if times is None:
        return None
    series = times if isinstance(times, pd.Series) else pd.Series(times)
    if len(series) != rows:
        raise ValueError(f"{len(series)} times for {rows} rows")
    if pd.api.types.is_integer_dtype(series.dtype):
        stamps = series.to_numpy(dtype=np.int64) * _MS_NS
    else:
        stamps = pd.DatetimeIndex(pd.to_datetime(series, utc=True)).as_unit("ns").asi8
    if np.any(np.diff(stamps) <= 0):
        raise ValueError("rows are not in strictly increasing time order")
    return np.asarray(stamps, dtype=np.int64)


def _window(
    train: int | timedelta, stamps: np.ndarray | None, rows: int
) -> tuple[int, Callable[[int], int]]:
    """The end of the first training window, and the first row of a rolling window that
    ends before a given row."""
    if not isinstance(train, timedelta):
        return train, lambda end: end - train
    if stamps is None:
        raise ValueError(f"a time-span window needs times: `times` or a {TIME_COLUMN!r} column")
    span = pd.Timedelta(train).value
    if rows == 0:
        return 0, lambda end: end
    first_end = int(np.searchsorted(stamps, stamps[0] + span, side="left"))
    return first_end, lambda end: int(np.searchsorted(stamps, stamps[end] - span, side="left"))


def _fold(number: int, begin: int, end: int, start: int, stop: int) -> Fold:
    return Fold(
        number=number,
        train=_frozen(np.arange(begin, end, dtype=np.int64)),
        test=_frozen(np.arange(start, stop, dtype=np.int64)),
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array
