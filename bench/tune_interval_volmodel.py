"""Experiment (issue 15): the return intervals' sigma from the volatility target's own model
of the same horizon instead of :mod:`candlecast.evaluation.interval_sigma`'s log-linear mix.

    .venv/bin/python bench/tune_interval_volmodel.py --part tune [--horizons 1,4,24]
    .venv/bin/python bench/tune_interval_volmodel.py --part measure [--horizons 1,4,24]

Everything but the sigma is :func:`candlecast.modeling.target_evaluation.evaluate_target`'s
interval evaluation (the windows, embargo, calibration tail, Mondrian bins of ``rv_24`` and
ACI), run with ``interval_sigmas`` swapped for one of these variants:

* ``current``: the QLIKE-fitted log-linear sigma (today's);
* ``lightgbm``: the square root of the volatility target's LightGBM kind's forecast of the
  next ``h`` candles' realized variance (its target defaults, :class:`TargetModel`'s log fit
  and smearing), fitted on each window's training rows;
* ``har``: the same with the volatility target's HAR-RV baseline kind;
* ``blend``: the geometric mean of the ``lightgbm`` and ``current`` sigmas;
* ``garch``: a zero-mean GARCH(1,1) with normal innovations (the ``arch`` package) fitted by
  maximum likelihood on each window's training rows' one-candle log returns (``ret_1``,
  divided by their standard deviation for the optimizer), then run with those parameters
  fixed through the rows it scales (:meth:`ARCHModelResult.forecast` from ``start``: each
  row's forecast sees the returns up to its own candle only); the sigma is the square root of
  the sum of the 1- to ``h``-step variance forecasts;
* ``gjr_t``: the same with GJR-GARCH(1,1,1) (a leverage term) and Student-t innovations;
* ``garch_blend``, ``gjr_t_blend``: the geometric mean of that sigma and ``current``.

Each sigma is fitted where the current one is: on each window's training rows for its test
rows, and for the first window's calibration tail on the rows before that tail (less the
embargo), so every calibration score is out of sample. The volatility kinds read the long
HAR window (a month at 1h, a week at 5m); rows without it are left out of their fits. The
GARCH fits are one per window (about 0.1 s each), not one per row.

``--part tune``: the tuning data only, the ten freqtrade 5m pairs (5 days of training, 1-day
windows and calibration tail, blocks of a day; the rows before the week window is full are
dropped for every variant, so the variants share their rows, and a pair left with fewer
than two windows is skipped, as TRX is; return baselines only, the
"no change" row shown) and the BTC/USD 1h file before 2019-07-01 (bench_targets' settings;
"no change" too, as the README's interval tables). ``--part measure``: the whole BTC/USD 1h
file as bench_targets runs it (return baselines and LightGBM), scored whole and from
2019-07-01 on (held out of all tuning). ``--variants``: which of them to run (``current``
is always run: the aims are read against it).
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

PAIRS = ["ETH", "LTC", "ADA", "DASH", "ETC", "NXT", "TRX", "XLM", "XMR", "ZEC"]
SHARED = Path("/work/shared/data/freqtrade")
REPO = Path(__file__).resolve().parents[1]
HOURLY = REPO / "data/bundled/BTC_USD-Hourly.csv"
HELD_OUT = pd.Timestamp("2019-07-01", tz="UTC")
#: The GARCH variants' models (``arch_model``'s arguments beyond the zero mean and p = q = 1).
GARCH = {"garch": {"o": 0, "dist": "normal"}, "gjr_t": {"o": 1, "dist": "t"}}
#: Geometric means of two sources.
BLENDS = {
    "blend": ("lightgbm", "current"),
    "garch_blend": ("garch", "current"),
    "gjr_t_blend": ("gjr_t", "current"),
}
VARIANTS = ("current", "lightgbm", "har", "blend", *GARCH, "garch_blend", "gjr_t_blend")
HEADER = (
    f"{'variant':<12}{'cover':>7}{'low':>7}{'mid':>7}{'high':>7}{'worst':>8}{'<80%':>8}"
    f"{'winkler':>9}{'worst':>8}{'aims':>6}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("tune", "measure"), default="tune")
    parser.add_argument("--horizons", default="1,4,24")
    parser.add_argument("--data", default="1h,5m", help="tune: which tuning data")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    asked = args.variants.split(",")
    if unknown := set(asked) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}")
    variants = tuple(v for v in VARIANTS if v == "current" or v in asked)
    from candlecast.data.importers import read_history

    horizons = [int(h) for h in args.horizons.split(",")]
    if args.part == "measure":
        candles = read_history(HOURLY)
        for horizon in horizons:
            measure(candles, horizon, variants)
        return
    for data in args.data.split(","):
        for horizon in horizons:
            started = time.perf_counter()
            if data == "1h":
                candles = read_history(HOURLY)
                times = pd.to_datetime(candles["ts"], unit="ms", utc=True)
                tuning = candles[times < HELD_OUT].reset_index(drop=True)
                rows = [run(tuning, "1h", horizon, (), variants)]
            else:
                series = [read_history(SHARED / f"{pair}_BTC-5m.feather") for pair in PAIRS]
                rows = [r for c in series if (r := run(c, "5m", horizon, (), variants))]
            kind = "persistence"
            print(f"\n== tune {data}, h = {horizon}, {len(rows)} series, return kind {kind}, "
                  f"{time.perf_counter() - started:.0f} s")  # fmt: skip
            show([{v: r[v][kind][None] for v in variants} for r in rows], data)


def measure(candles: pd.DataFrame, horizon: int, variants: Sequence[str]) -> None:
    """The whole BTC/USD 1h file and its held-out part, every return kind."""
    started = time.perf_counter()
    tables = run(candles, "1h", horizon, ("lightgbm",), variants, (None, HELD_OUT))
    print(f"\n== measure 1h, h = {horizon}, {time.perf_counter() - started:.0f} s")
    for label, part in (("whole file", None), (f"held out, from {HELD_OUT.date()}", HELD_OUT)):
        for kind in tables["current"]:
            print(f"-- {label}, return kind {kind}")
            show([{v: tables[v][kind][part] for v in variants}], "1h")


def show(tables: list[dict[str, tuple[float, ...]]], data: str) -> None:
    """Mean over series of coverage and terciles, the worst block over series, blocks below
    80% summed, the mean Winkler gain over the fixed width and its worst series, and how many
    of the four aims (coverage, terciles, worst block, Winkler gain) the mean row meets."""
    print(HEADER)
    for name in tables[0]:
        table = np.array([t[name] for t in tables])
        mean = table.mean(axis=0)
        worst = table[:, 4].min()
        print(
            f"{name:<12}{mean[0]:>7.3f}{mean[1]:>7.3f}{mean[2]:>7.3f}{mean[3]:>7.3f}"
            f"{worst:>8.3f}{int(table[:, 5].sum()):>4}/{int(table[:, 7].sum()):<3}"
            f"{mean[6]:>+9.1%}{table[:, 6].min():>+8.1%}{aims(mean, worst):>6}"
        )


def aims(mean: np.ndarray, worst: float) -> str:
    met = [
        0.885 <= mean[0] <= 0.915,
        all(0.87 <= t <= 0.93 for t in mean[1:4]),
        worst >= 0.8,
        mean[6] >= 0.10,
    ]
    return f"{sum(met)}/4"


def run(
    candles: pd.DataFrame,
    timeframe: str,
    horizon: int,
    kinds: tuple[str, ...],
    variants: Sequence[str] = VARIANTS,
    parts: tuple[pd.Timestamp | None, ...] = (None,),
) -> dict[str, dict[str, dict[pd.Timestamp | None, tuple[float, ...]]]]:
    """Each variant's scores per return kind on the forecasts from each of ``parts`` (None:
    all of them)."""
    from candlecast.modeling import target_evaluation as te
    from candlecast.modeling.evaluation_results import EvaluationSettings
    from candlecast.targets import get_target

    target = get_target("return", horizon)
    frame = te.target_frame(candles, timeframe, "bench:X/Y", target)
    settings = EvaluationSettings()
    if timeframe == "5m":
        settings = EvaluationSettings(train_rows=1440, test_rows=288, calibration_rows=288)
        frame = frame[volatility_inputs(frame, timeframe, horizon, "lightgbm")[1]]
        frame = frame.reset_index(drop=True)
        if len(frame) < settings.train_rows + 2 * settings.test_rows + target.embargo:
            print(f"skipped: {len(frame)} rows with the week window (gaps break it)")
            return {}
    original, cache = te.interval_sigmas, {}
    days = 30 if timeframe == "1h" else 1
    out = {}
    for variant in variants:
        swap = functools.partial(variant_sigmas, variant, original, cache)
        with mock.patch.object(te, "interval_sigmas", swap):
            result = te.evaluate_target(frame, target, kinds, timeframe, settings, levels=(0.9,))
        out[variant] = {
            name: {part: scores(result, name, part, days) for part in parts}
            for name in result.kinds
        }
    return out


def variant_sigmas(variant, original, cache, frame, positions, folds, settings, target, tf):
    """``interval_sigmas``' contract (each scored row's sigma by position) for ``variant``
    (``original``: today's function); each source's sigmas are computed once per frame."""
    args = (frame, positions, folds, settings, target, tf)
    for name in BLENDS.get(variant, (variant,)):
        if name not in cache:
            started = time.perf_counter()
            if name == "current":
                cache[name] = original(*args)
            elif name in GARCH:
                cache[name] = garch_sigmas(name, *args)
            else:
                cache[name] = kind_sigmas(name, *args)
            print(f"   sigma {name}: {time.perf_counter() - started:.1f} s")
    if variant in BLENDS:
        first, second = BLENDS[variant]
        return np.sqrt(cache[first] * cache[second])
    return cache[variant]


def volatility_inputs(
    frame: pd.DataFrame, timeframe: str, horizon: int, name: str
) -> tuple[np.ndarray, np.ndarray, Callable]:
    """The volatility kind ``name``'s inputs on every row of ``frame``, which rows have them,
    and a maker of the unfitted model (the kind's target defaults, as evaluation makes it)."""
    from candlecast.modeling.kinds import get_kind
    from candlecast.modeling.kinds.base import window_inputs
    from candlecast.modeling.targeted import TargetModel
    from candlecast.targets import get_target
    from candlecast.timeframes import timeframe_ms

    target = get_target("volatility", horizon)
    kind = get_kind(name, "volatility")
    params = kind.parse_params(target.kind_defaults.get(name) or None)
    make = functools.partial(TargetModel.create, kind, target, timeframe, params)
    spec = make().spec
    x, usable = window_inputs(frame, spec.features, spec.window, timeframe_ms(timeframe))
    return x, usable & np.isfinite(x).all(axis=1), make


def kind_sigmas(name, frame, positions, folds, settings, target, timeframe) -> np.ndarray:
    """Sigma from volatility kind ``name`` fitted where the current sigma is fitted (each
    window's training rows; the calibration tail: the rows before it), on the realized
    variance of the same ``h`` candles."""
    from candlecast.modeling import target_evaluation as te

    x, ok, make = volatility_inputs(frame, timeframe, target.horizon, name)
    x, ok = x[positions], ok[positions]
    realized = frame[te.REALIZED_VARIANCE].to_numpy(np.float64)[positions]
    out = np.full(len(positions), np.nan)
    tail, before = te._calibration_rows(folds[0], settings, target)
    for fit_rows, rows in [(before, tail), *((fold.train, fold.test) for fold in folds)]:
        if not ok[rows].all():
            raise ValueError(f"{name}: rows to scale without the volatility features")
        model = make()
        model.fit(x[fit_rows[ok[fit_rows]]], realized[fit_rows[ok[fit_rows]]])
        out[rows] = np.sqrt(np.maximum(model.predict(x[rows]), 0.0))
    return out


def garch_sigmas(name, frame, positions, folds, settings, target, timeframe) -> np.ndarray:
    """Sigma from the GARCH model ``name`` (:data:`GARCH`) fitted where the current sigma is
    fitted (each window's training rows; the calibration tail: the rows before it) on the
    one-candle log returns of those rows, then filtered with its parameters fixed through the
    rows it scales: each row's ``h``-candle variance is the sum of its 1- to ``h``-step
    forecasts, from the returns up to that row's candle."""
    from arch import arch_model

    from candlecast.modeling import target_evaluation as te

    returns = frame["ret_1"].to_numpy(np.float64)
    out = np.full(len(positions), np.nan)
    tail, before = te._calibration_rows(folds[0], settings, target)
    for fit_rows, rows in [(before, tail), *((fold.train, fold.test) for fold in folds)]:
        # frame rows: the fit's span, then on through the last row scaled (rows the
        # evaluation skipped in between are returns of the series all the same)
        first, last, end = positions[fit_rows[0]], positions[fit_rows[-1]], positions[rows[-1]]
        scale = returns[first : last + 1].std()
        model = arch_model(
            returns[first : end + 1] / scale, mean="Zero", p=1, q=1, rescale=False, **GARCH[name]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a ConvergenceWarning keeps the best point found
            fit = model.fit(last_obs=last - first + 1, disp="off")
        start = positions[rows[0]] - first
        variance = fit.forecast(horizon=target.horizon, start=start, reindex=False).variance
        horizon_variance = variance.to_numpy().sum(axis=1) * scale**2
        out[rows] = np.sqrt(horizon_variance[positions[rows] - first - start])
    return out


def scores(result, name: str, start: pd.Timestamp | None, days: int) -> tuple[float, ...]:
    """Coverage, terciles, worst block, blocks below 80%, Winkler gain over the fixed width
    and blocks of the kind's 90% intervals on the forecasts from ``start`` (None: all)."""
    from candlecast.evaluation.intervals import interval_scores

    kind = result.kinds[name]
    keep = np.ones(len(result.times), bool) if start is None else result.times >= start
    predicted, half = kind.predicted[keep], kind.fixed_half_width[keep]
    pairs = {
        "adaptive": (kind.bands.lower[keep], kind.bands.upper[keep]),
        "fixed": (predicted - half, predicted + half),
    }
    s, base = (
        interval_scores(
            result.realized[keep],
            low,
            high,
            level=0.9,
            ex_ante_volatility=result.ex_ante_volatility[keep],
            times=result.times[keep],
            block_days=days,
        )
        for low, high in pairs.values()
    )
    return (
        s.rate,
        *s.by_volatility_tercile,
        s.rolling_30d_min,
        s.blocks_below_80,
        1 - s.winkler / base.winkler,
        s.blocks,
    )


if __name__ == "__main__":
    main()
