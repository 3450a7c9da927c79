"""Walk-forward evaluation of model kinds on one stream's history, beside persistence.

Every kind is scored on the same rows (those the kind with the longest window can read) and
the same walk-forward windows (:func:`~candlecast.evaluation.walkforward.walk_forward`, never
a random split): each window refits a fresh model on the rows before it and forecasts the
window. Persistence is always evaluated, as the reference of every ratio and test.

Prediction intervals are split conformal and honest about time: a window's half-width comes
from the out-of-sample residuals of the kind's earlier windows (the first window's from a
calibration tail held out of its own training rows), never from the rows it forecasts.

Every kind is refitted at every window. :attr:`EvaluationSettings.fit_budget_s`, when set, is
a stop, not a shortcut: a kind whose fitting time passes it stops the evaluation with a
:class:`~candlecast.errors.FitBudgetExceededError` naming the kind, so that a slower machine
never reports figures of fewer refits (``refit_windows`` lists every window).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from candlecast.errors import ConfigError, FitBudgetExceededError, NotEnoughHistoryError
from candlecast.evaluation import metrics, significance
from candlecast.evaluation.backtest import Backtest, backtest_long_flat
from candlecast.evaluation.walkforward import Fold, predict_out_of_sample, walk_forward
from candlecast.features.engineering import FEATURE_COLUMNS, compute_features, next_return
from candlecast.modeling.datasets import kind_features
from candlecast.modeling.evaluation_results import (
    EvaluationReport,
    EvaluationSettings,
    FoldSpan,
    KindEvaluation,
)
from candlecast.modeling.kinds import BASELINE, get_kind, kind_names
from candlecast.modeling.kinds.base import ModelKind, window_inputs
from candlecast.timeframes import timeframe_ms

#: ``on_window(kind, done, total)``: called after each forecast window of each kind.
OnWindow = Callable[[str, int, int], None]


def evaluation_frame(candles: pd.DataFrame, timeframe: str, market: str) -> pd.DataFrame:
    """Feature rows joined with their next-candle target, sorted by ``event_timestamp``.

    The join is exact on the close time, so every row's features are those of the candle that
    just closed (gaps leave rows out rather than pairing old features with a newer target).

    Raises:
        NotEnoughHistoryError: no candles.
        ValueError: candles that share a timestamp (validate the history first).
    """
    if candles.empty:
        raise NotEnoughHistoryError("no candles to evaluate on: import or backfill history first")
    ordered = candles.sort_values("ts", kind="stable").reset_index(drop=True)
    duplicated = int(ordered["ts"].duplicated().sum())
    if duplicated:
        raise ValueError(
            f"{duplicated} candles share a timestamp: validate the history first "
            "(candlecast import-candles)"
        )
    features = compute_features(ordered, timeframe, market)
    frame = features.merge(next_return(ordered, timeframe), on="event_timestamp")
    frame = frame.dropna(subset=[*FEATURE_COLUMNS, "target"])
    frame = frame[np.isfinite(frame["target"].to_numpy(dtype=np.float64))]
    return frame.sort_values("event_timestamp").reset_index(drop=True)


def infer_timeframe(ts: Sequence[int] | np.ndarray | pd.Series) -> str:
    """The timeframe of candles opened at unix-ms ``ts``: their median spacing.

    Raises:
        ValueError: fewer than two distinct times, or a spacing of no whole minutes.
    """
    steps = np.diff(np.unique(np.asarray(ts, dtype=np.int64)))
    if not len(steps):
        raise ValueError("too few candles to infer the timeframe: give --timeframe")
    step = int(np.median(steps))
    for unit in ("w", "d", "h", "m"):
        if step % timeframe_ms(f"1{unit}") == 0:
            return f"{step // timeframe_ms(f'1{unit}')}{unit}"
    raise ValueError(f"median candle spacing of {step} ms is no timeframe: give --timeframe")


def kind_list(models: str | None, configured: Sequence[str]) -> list[str]:
    """The kinds to evaluate: ``models`` (comma-separated names, or ``all`` for every
    registered kind), else ``configured``; persistence first, always.

    Raises:
        UnknownModelKindError: a name no kind registered (the message lists the known ones).
    """
    if models is None:
        names = list(configured)
    elif models.strip() == "all":
        names = kind_names()
    else:
        names = [name.strip() for name in models.split(",") if name.strip()]
    names = list(dict.fromkeys([BASELINE, *names]))
    for name in names:
        get_kind(name)
    return names


def evaluate_kinds(
    frame: pd.DataFrame,
    kinds: Sequence[str],
    timeframe: str,
    settings: EvaluationSettings | None = None,
    *,
    params: Mapping[str, Mapping[str, Any] | None] | None = None,
    on_window: OnWindow | None = None,
) -> EvaluationReport:
    """Walk-forward evaluation of ``kinds`` (and persistence) on an :func:`evaluation_frame`.

    Args:
        params: per kind, raw parameters validated by the kind (default: its defaults).
        on_window: progress callback, see :data:`OnWindow`.

    Raises:
        UnknownModelKindError: an unknown kind. ConfigError: bad parameters.
        NotEnoughHistoryError: too few usable rows for one window.
    """
    settings = settings or EvaluationSettings()
    makers = {name: _maker(name, (params or {}).get(name)) for name in kind_list(None, kinds)}
    ordered = frame.sort_values("event_timestamp").reset_index(drop=True)
    inputs, positions = aligned_inputs(ordered, makers, timeframe_ms(timeframe))
    target = ordered["target"].to_numpy(dtype=np.float64)[positions]
    folds = walk_forward(
        len(positions), train=settings.train_rows, test=settings.test_rows, step=settings.step_rows
    )
    times = pd.DatetimeIndex(ordered["event_timestamp"].iloc[positions])
    scored = np.concatenate([fold.test for fold in folds])
    forecasts = {
        name: _forecast(name, make, inputs[name], target, folds, settings, on_window)
        for name, make in makers.items()
    }
    reference = forecasts[BASELINE].predicted
    realised = target[scored]
    return EvaluationReport(
        timeframe=timeframe,
        settings=settings,
        frame_rows=len(ordered),
        usable_rows=len(positions),
        folds=tuple(_span(fold, times) for fold in folds),
        times=times[scored],
        target=realised,
        buy_and_hold=_backtest(realised, reference, timeframe, settings).buy_and_hold,
        kinds={
            name: _score(forecast, realised, reference, timeframe, settings)
            for name, forecast in forecasts.items()
        },
    )


@dataclass
class _Refits:
    """A kind's models over the windows, refitted while within the budget's pace."""

    name: str
    make: Callable[[], ModelKind]
    budget_s: float | None
    windows: int
    done: list[int] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    last: float = 0.0
    model: ModelKind | None = None

    def model_for(self, fold: Fold, x: np.ndarray, y: np.ndarray) -> ModelKind:
        """A model fitted on ``fold``'s training rows.

        Raises:
            FitBudgetExceededError: the kind's fitting so far passed the budget.
        """
        started = time.perf_counter()
        model = self.make()
        model.fit(x[fold.train], y[fold.train])
        self.last = time.perf_counter() - started
        self.model, self.seconds = model, self.seconds + self.last
        self.done.append(fold.number)
        if self.budget_s and self.seconds > self.budget_s and len(self.done) < self.windows:
            raise FitBudgetExceededError(
                f"{self.name}: {self.seconds:.0f} s of fitting after {len(self.done)} of "
                f"{self.windows} windows passed the fit budget of {self.budget_s:g} s; give "
                "--fit-budget 0 (no budget) or fewer windows (--test-rows, --step-rows)"
            )
        return model


@dataclass(frozen=True, eq=False)
class _Forecast:
    refits: _Refits
    predicted: np.ndarray
    half_width: np.ndarray


def _maker(name: str, raw: Mapping[str, Any] | None) -> Callable[[], ModelKind]:
    kind = get_kind(name)
    try:
        parsed = kind.parse_params(dict(raw) if raw else None)
    except ValidationError as exc:
        raise ConfigError(f"parameters of {name}: {exc}") from exc
    return functools.partial(kind, kind_features(kind), parsed)


def aligned_inputs(
    frame: pd.DataFrame, makers: Mapping[str, Callable[[], Any]], step_ms: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each kind's inputs on the rows every kind can read, and those rows' positions."""
    specs = {name: make().spec for name, make in makers.items()}
    keys = {name: (spec.window, spec.features) for name, spec in specs.items()}
    built = {key: window_inputs(frame, key[1], key[0], step_ms) for key in set(keys.values())}
    # rows every kind can read: a full window, and (multi-timeframe) every higher feature
    usable = np.logical_and.reduce(
        [mask & np.isfinite(x).all(axis=1) for x, mask in built.values()]
    )
    positions = np.flatnonzero(usable)
    return {name: built[key][0][positions] for name, key in keys.items()}, positions


def _forecast(
    name: str,
    make: Callable[[], ModelKind],
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    settings: EvaluationSettings,
    on_window: OnWindow | None,
) -> _Forecast:
    """Out-of-sample forecasts and conformal half-widths of one kind over every window."""
    refits = _Refits(name, make, settings.fit_budget_s, len(folds))
    half = _calibration_width(make, x, y, folds[0], settings)
    predicted: list[np.ndarray] = []
    widths: list[np.ndarray] = []
    residuals: list[np.ndarray] = []
    for fold in folds:
        forecast = np.asarray(refits.model_for(fold, x, y).predict(x[fold.test]), np.float64)
        if forecast.shape != fold.test.shape:
            raise ValueError(f"{name}: forecast shape {forecast.shape}, want {fold.test.shape}")
        if residuals:  # only windows already forecast: none of these rows
            half = metrics.conformal_half_width(np.concatenate(residuals), settings.coverage)
        predicted.append(forecast)
        widths.append(np.full(len(forecast), half))
        residuals.append(y[fold.test] - forecast)
        if on_window:
            on_window(name, fold.number + 1, len(folds))
    return _Forecast(refits, np.concatenate(predicted), np.concatenate(widths))


def _calibration_width(
    make: Callable[[], ModelKind],
    x: np.ndarray,
    y: np.ndarray,
    first: Fold,
    settings: EvaluationSettings,
) -> float:
    """The first window's half-width: fitted without its training tail, scored on it."""
    cut = len(first.train) - settings.calibration_rows
    inner = Fold(-1, first.train[:cut], first.train[cut:])
    held_out = predict_out_of_sample(make, x, y, [inner])
    return metrics.conformal_half_width(held_out.target - held_out.predicted, settings.coverage)


def _score(
    forecast: _Forecast,
    target: np.ndarray,
    reference: np.ndarray,
    timeframe: str,
    settings: EvaluationSettings,
) -> KindEvaluation:
    """Every metric of one kind's forecasts; ``reference`` is persistence's."""
    predicted, refits = forecast.predicted, forecast.refits
    errors, reference_errors = predicted - target, reference - target
    return KindEvaluation(
        kind=refits.name,
        window=refits.make().window,
        windows=refits.windows,
        refit_windows=tuple(refits.done),
        fit_seconds=refits.seconds,
        predicted=predicted,
        half_width=forecast.half_width,
        rmse=metrics.rmse(target, predicted),
        mae=metrics.mae(target, predicted),
        ratios=metrics.persistence_ratios(target, predicted),
        direction=metrics.directional_accuracy(target, predicted, settings.confidence),
        coverage=metrics.interval_coverage(
            target, predicted - forecast.half_width, predicted + forecast.half_width
        ),
        diebold_mariano=significance.diebold_mariano(errors, reference_errors),
        fold_loss_test=_fold_loss_test(errors, reference_errors, refits.windows),
        bootstrap=significance.block_bootstrap_ratio(
            errors,
            reference_errors,
            resamples=settings.resamples,
            confidence=settings.confidence,
            seed=settings.seed,
        ),
        backtest=_backtest(target, predicted, timeframe, settings).strategy,
    )


def _fold_loss_test(
    errors: np.ndarray, reference_errors: np.ndarray, windows: int
) -> significance.WindowedTest | None:
    """The windowed test with one window per forecast window (all of one length); None with
    a single window."""
    if windows < 2:
        return None
    return significance.windowed_loss_test(errors, reference_errors, windows=windows)


def _backtest(
    target: np.ndarray, predicted: np.ndarray, timeframe: str, settings: EvaluationSettings
) -> Backtest:
    return backtest_long_flat(target, predicted, timeframe=timeframe, fee_bps=settings.fee_bps)


def _span(fold: Fold, times: pd.DatetimeIndex) -> FoldSpan:
    return FoldSpan(
        number=fold.number,
        train_start=times[fold.train[0]],
        train_end=times[fold.train[-1]],
        test_start=times[fold.test[0]],
        test_end=times[fold.test[-1]],
        train_rows=len(fold.train),
        test_rows=len(fold.test),
    )
