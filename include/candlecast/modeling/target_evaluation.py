"""Walk-forward evaluation of any target at any horizon, with the embargo its labels need.

Every kind (the target's baselines first, then the learned kinds that declare the target) is
refitted at every window on the rows before it, with ``target.embargo`` rows between the last
training row and the window, and scored on the same rows with the target's own scores, its
ratios to each baseline, a Diebold-Mariano test on the target's primary loss (HAC lags for the
horizon's overlapping labels) and the share of windows won. Every window is refitted, however
long a kind takes: figures never depend on the machine's speed.

Return forecasts also get intervals at each configured level: normalized conformal scores
scaled by a forecast of the horizon's volatility, refitted at every window on
its training rows like the kinds (:mod:`candlecast.evaluation.interval_sigma`), with ACI on
top (:mod:`candlecast.evaluation.intervals`), one state per tercile bin of ex-ante volatility
(edges from each window's training rows), scored beside today's fixed-width split conformal
interval.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from candlecast.errors import ConfigError, NotEnoughHistoryError
from candlecast.evaluation import interval_sigma, metrics, significance
from candlecast.evaluation import intervals as iv
from candlecast.evaluation.walkforward import Fold, walk_forward
from candlecast.features.engineering import FEATURE_COLUMNS, compute_features
from candlecast.features.volatility import volatility_features
from candlecast.modeling.evaluate import aligned_inputs
from candlecast.modeling.evaluation_results import EvaluationSettings
from candlecast.modeling.kinds import get_kind
from candlecast.modeling.targeted import TargetModel
from candlecast.targets import Target, get_target
from candlecast.timeframes import timeframe_ms

#: The interval levels scored by default (90% is the headline level of every figure).
LEVELS = (0.8, 0.9, 0.95)
OnWindow = Callable[[str, int, int], None]
#: Return frames: the realized variance of the row's next ``h`` candles, which the interval
#: sigma is fitted on (never a feature: it lies in the future of the row).
REALIZED_VARIANCE = "realized_variance"


def target_frame(
    candles: pd.DataFrame,
    timeframe: str,
    market: str,
    target: Target,
    features: pd.DataFrame | None = None,
    labelled: bool = True,
    volatility: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature rows (the stream's and the volatility features) with ``target``'s label,
    sorted by ``event_timestamp``; rows without a label are dropped, or with ``labelled``
    false kept with a NaN label (the rows the platform forecasts before their outcome is
    known). ``features``: the candles' :func:`compute_features` rows when the caller has them
    already (every target of one window shares them), or the rows it wants, of those
    candles (the offline table's). ``volatility``: the candles' :func:`volatility_features`
    when the caller has them, with ``target.horizon`` among their horizons (each column is
    computed on its own: more horizons add columns and change none).

    Raises:
        NotEnoughHistoryError: no candles. ValueError: candles sharing a timestamp.
    """
    if candles.empty:
        raise NotEnoughHistoryError("no candles to evaluate on: import or backfill history first")
    ordered = candles.sort_values("ts", kind="stable").reset_index(drop=True)
    if ordered["ts"].duplicated().any():
        raise ValueError("candles share a timestamp: validate the history first")
    if features is None:
        features = compute_features(ordered, timeframe, market)
    if volatility is None:
        volatility = volatility_features(ordered, timeframe, (target.horizon,))
    frame = features.merge(volatility.drop(columns="candle_ts"), on="event_timestamp")
    how = "inner" if labelled else "left"
    frame = frame.merge(target.label(ordered, timeframe), on="event_timestamp", how=how)
    if target.name == "return":
        # intervals scale by the sigma forecast (fitted on the horizon's realized variance) and
        # are judged by terciles of the last 24 candles' variance
        realized = get_target("volatility", target.horizon).label(ordered, timeframe)
        frame = frame.merge(
            realized.rename(columns={"target": REALIZED_VARIANCE}), on="event_timestamp", how=how
        )
        frame = frame.dropna(subset=[*interval_sigma.sigma_columns(timeframe), iv.EX_ANTE_COLUMN])
    frame = frame.dropna(subset=[*FEATURE_COLUMNS, *(["target"] if labelled else [])])
    return frame.sort_values("event_timestamp").reset_index(drop=True)


@dataclass(frozen=True)
class Versus:
    """A kind against one opponent on the target's primary loss (lower is better)."""

    opponent: str
    ratio: float  # mean loss / the opponent's
    dm_statistic: float
    dm_p_value: float  # one-sided: the kind's loss is lower
    folds_won: float  # share of windows with a lower mean loss


@dataclass(frozen=True, eq=False)
class KindResult:
    kind: str
    baseline: bool
    predicted: np.ndarray
    scores: dict[str, float]
    versus: dict[str, Versus]
    #: Return targets: the adaptive intervals by level, and today's fixed-width one at 90%.
    intervals: dict[float, iv.IntervalScores] = field(default_factory=dict)
    fixed_width: iv.IntervalScores | None = None
    aci_alpha: dict[float, float] = field(default_factory=dict)
    #: The adaptive bands at the settings' coverage and the fixed half-width, per scored row
    #: (to score a part of the sample, as the bench's held-out part).
    bands: iv.Intervals | None = None
    fixed_half_width: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class TargetReport:
    target: Target
    timeframe: str
    settings: EvaluationSettings
    folds: tuple[Fold, ...]
    times: pd.DatetimeIndex
    realized: np.ndarray
    kinds: dict[str, KindResult]
    frame_rows: int
    usable_rows: int
    #: Return targets: the ex-ante volatility (``rv_24``) of each scored row.
    ex_ante_volatility: np.ndarray | None = None

    def as_dict(self) -> dict[str, Any]:
        from candlecast.modeling.target_report import target_report_dict

        return target_report_dict(self)


def target_kinds(target: Target, kinds: Sequence[str]) -> list[str]:
    """The target's baselines, then each of ``kinds`` that can forecast the target.

    Raises:
        UnknownModelKindError: a kind that does not forecast this target.
    """
    names = list(dict.fromkeys([*target.baselines, *kinds]))
    for name in names:
        get_kind(name, target.name)
    return names


def evaluate_target(
    frame: pd.DataFrame,
    target: Target,
    kinds: Sequence[str],
    timeframe: str,
    settings: EvaluationSettings | None = None,
    *,
    params: Mapping[str, Mapping[str, Any] | None] | None = None,
    levels: Sequence[float] = LEVELS,
    on_window: OnWindow | None = None,
) -> TargetReport:
    """Walk-forward evaluation of ``kinds`` and the target's baselines on a
    :func:`target_frame`.

    Raises:
        UnknownModelKindError, ConfigError, NotEnoughHistoryError: as the names say.
    """
    settings = settings or EvaluationSettings()
    makers = {
        name: _maker(name, target, timeframe, (params or {}).get(name))
        for name in target_kinds(target, kinds)
    }
    ordered = frame.sort_values("event_timestamp").reset_index(drop=True)
    inputs, positions = aligned_inputs(ordered, makers, timeframe_ms(timeframe))
    y = ordered["target"].to_numpy(dtype=np.float64)[positions]
    folds = walk_forward(
        len(positions),
        train=settings.train_rows,
        test=settings.test_rows,
        step=settings.step_rows,
        gap=target.embargo,
    )
    scored = np.concatenate([fold.test for fold in folds])
    predicted = {
        name: _forecast(name, make, inputs[name], y, folds, on_window)
        for name, make in makers.items()
    }
    realized = y[scored]
    results = {
        name: _result(name, makers[name], predicted, realized, target, folds) for name in makers
    }
    ex_ante = None
    if target.name == "return":
        sigma = interval_sigmas(ordered, positions, folds, settings, target, timeframe)
        tercile_basis = ordered[iv.EX_ANTE_COLUMN].to_numpy(np.float64)[positions]
        bins = interval_bins(tercile_basis, folds, settings, target)
        ex_ante = tercile_basis[scored]
        times = pd.DatetimeIndex(ordered["event_timestamp"].iloc[positions])
        for name, make in makers.items():
            results[name] = _with_intervals(
                results[name],
                make,
                inputs[name],
                y,
                (sigma, bins),
                folds,
                settings,
                levels,
                target,
                tercile_basis[scored],
                times[scored],
            )
    return TargetReport(
        target=target,
        timeframe=timeframe,
        settings=settings,
        folds=tuple(folds),
        times=pd.DatetimeIndex(ordered["event_timestamp"].iloc[positions[scored]]),
        realized=realized,
        kinds=results,
        frame_rows=len(ordered),
        usable_rows=len(positions),
        ex_ante_volatility=ex_ante,
    )


def _maker(
    name: str, target: Target, timeframe: str, raw: Mapping[str, Any] | None
) -> Callable[[], TargetModel]:
    kind = get_kind(name, target.name)
    merged = {**target.kind_defaults.get(name, {}), **dict(raw or {})}
    try:
        parsed = kind.parse_params(merged or None)
    except ValidationError as exc:
        raise ConfigError(f"parameters of {name}: {exc}") from exc
    return functools.partial(TargetModel.create, kind, target, timeframe, parsed)


def _forecast(
    name: str,
    make: Callable[[], TargetModel],
    x: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    on_window: OnWindow | None,
) -> np.ndarray:
    """Out-of-sample forecasts of every window, each from a model refitted before it."""
    out = []
    for fold in folds:
        model = make()
        model.fit(x[fold.train], y[fold.train])
        forecast = np.asarray(model.predict(x[fold.test]), np.float64).reshape(-1)
        if forecast.shape != fold.test.shape:
            raise ValueError(f"{name}: forecast shape {forecast.shape}, want {fold.test.shape}")
        out.append(forecast)
        if on_window:
            on_window(name, fold.number + 1, len(folds))
    return np.concatenate(out)


def _result(
    name: str,
    make: Callable[[], TargetModel],
    predicted: Mapping[str, np.ndarray],
    realized: np.ndarray,
    target: Target,
    folds: Sequence[Fold],
) -> KindResult:
    mine = predicted[name]
    loss = target.loss(realized, mine)
    bounds = np.cumsum([0, *(len(fold.test) for fold in folds)])
    versus = {}
    for opponent in target.baselines:
        if opponent == name:
            continue
        other = target.loss(realized, predicted[opponent])
        test = significance.diebold_mariano_losses(
            loss, other, horizon=target.horizon, name=target.primary
        )
        won = [loss[a:b].mean() < other[a:b].mean() for a, b in itertools.pairwise(bounds)]
        versus[opponent] = Versus(
            opponent,
            float(loss.mean() / other.mean()) if other.mean() > 0 else float("nan"),
            test.statistic,
            test.p_value,
            float(np.mean(won)),
        )
    return KindResult(name, make().kind.baseline, mine, target.scores(realized, mine), versus)


def interval_sigmas(
    frame: pd.DataFrame,
    positions: np.ndarray,
    folds: Sequence[Fold],
    settings: EvaluationSettings,
    target: Target,
    timeframe: str,
) -> np.ndarray:
    """The ex-ante sigma of each scored row's ``h``-candle return, by position (NaN where
    unused): each window's from the sigma fitted on its own training rows, the calibration
    tail's from the fit on the rows before it, as the kinds are refitted (causal: a fit sees
    only labels realized before the rows it scales)."""
    columns = interval_sigma.sigma_columns(timeframe)
    values = frame[columns].to_numpy(np.float64)[positions]
    realized = frame[REALIZED_VARIANCE].to_numpy(np.float64)[positions]
    out = np.full(len(positions), np.nan)
    tail, before = _calibration_rows(folds[0], settings, target)
    for fit_rows, rows in [(before, tail), *((fold.train, fold.test) for fold in folds)]:
        fit = interval_sigma.fit_sigma(values[fit_rows], realized[fit_rows], columns)
        out[rows] = fit.sigma(values[rows])
    return out


def interval_bins(
    ex_ante: np.ndarray, folds: Sequence[Fold], settings: EvaluationSettings, target: Target
) -> np.ndarray:
    """Each scored row's volatility bin, by position (-1 where unused): edges from the
    terciles of its window's training rows, as :func:`interval_sigmas` fits its sigma (the
    calibration tail's from the rows before it)."""
    out = np.full(len(ex_ante), -1, np.int64)
    tail, before = _calibration_rows(folds[0], settings, target)
    for fit_rows, rows in [(before, tail), *((fold.train, fold.test) for fold in folds)]:
        out[rows] = iv.volatility_bins(ex_ante[rows], iv.bin_edges(ex_ante[fit_rows]))
    return out


def _calibration_rows(
    first: Fold, settings: EvaluationSettings, target: Target
) -> tuple[np.ndarray, np.ndarray]:
    """The first window's calibration tail, and the rows before it (and its embargo) that the
    model and sigma it is scored with are fitted on."""
    rows = first.train[-settings.calibration_rows :]
    fit_rows = first.train[: len(first.train) - settings.calibration_rows - target.embargo]
    if len(fit_rows) < 2:
        raise NotEnoughHistoryError("too few training rows before the calibration tail")
    return rows, fit_rows


def _with_intervals(
    result: KindResult,
    make: Callable[[], TargetModel],
    x: np.ndarray,
    y: np.ndarray,
    scale: tuple[np.ndarray, np.ndarray],
    folds: Sequence[Fold],
    settings: EvaluationSettings,
    levels: Sequence[float],
    target: Target,
    ex_ante: np.ndarray,
    times: pd.DatetimeIndex,
) -> KindResult:
    """The kind's adaptive intervals at each level (``scale``: each row's sigma and
    volatility bin) and the fixed-width one at the settings' coverage, scored on the same
    rows."""
    sigma, bins = scale
    scored = np.concatenate([fold.test for fold in folds])
    realized, predicted = y[scored], result.predicted
    calibration_rows, calibration = _calibration(make, x, y, folds[0], settings, target)
    scores_at: dict[float, iv.IntervalScores] = {}
    alphas: dict[float, float] = {}
    headline = None
    for level in levels:
        bands = iv.adaptive_intervals(
            predicted,
            sigma[scored],
            realized,
            coverage=level,
            horizon=target.horizon,
            calibration=np.abs(y[calibration_rows] - calibration) / sigma[calibration_rows],
            bins=bins[scored],
            calibration_bins=bins[calibration_rows],
        )
        scores_at[level] = iv.interval_scores(
            realized,
            bands.lower,
            bands.upper,
            level=level,
            ex_ante_volatility=ex_ante,
            times=times,
        )
        alphas[level] = float(bands.alpha[-1])
        if level == settings.coverage:
            headline = bands
    half = _fixed_half_widths(
        y[calibration_rows] - calibration,
        realized - predicted,
        folds,
        settings.coverage,
        target.horizon,
    )
    fixed = iv.interval_scores(
        realized,
        predicted - half,
        predicted + half,
        level=settings.coverage,
        ex_ante_volatility=ex_ante,
        times=times,
    )
    return KindResult(
        result.kind,
        result.baseline,
        predicted,
        result.scores,
        result.versus,
        scores_at,
        fixed,
        alphas,
        headline,
        half,
    )


def _calibration(
    make: Callable[[], TargetModel],
    x: np.ndarray,
    y: np.ndarray,
    first: Fold,
    settings: EvaluationSettings,
    target: Target,
) -> tuple[np.ndarray, np.ndarray]:
    """The first window's calibration: the tail of its training rows, forecast by a model
    fitted on the rows before that tail (and its embargo)."""
    rows, fit_rows = _calibration_rows(first, settings, target)
    model = make()
    model.fit(x[fit_rows], y[fit_rows])
    return rows, np.asarray(model.predict(x[rows]), np.float64).reshape(-1)


def _fixed_half_widths(
    calibration_residuals: np.ndarray,
    residuals: np.ndarray,
    folds: Sequence[Fold],
    coverage: float,
    horizon: int,
) -> np.ndarray:
    """Today's interval: one half-width per window, from the residuals realized before it."""
    known = [calibration_residuals]
    out, start = [], 0
    for fold in folds:
        count = len(fold.test)
        half = metrics.conformal_half_width(np.concatenate(known), coverage)
        out.append(np.full(count, half))
        known.append(residuals[start : start + count - horizon])
        start += count
    return np.concatenate(out)
