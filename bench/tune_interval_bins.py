"""How the return intervals' volatility bins were chosen: on the tuning data only, the freqtrade
5m pairs and the BTC/USD 1h file's forecasts *before 2019-07-01* (the candles after it are
dropped before anything is computed), never on the forecasts bench/bench_targets.py reports
as held out.

    .venv/bin/python bench/tune_interval_bins.py [--horizons 1,4,24] [--data 1h,5m]

Walk-forward as evaluation runs it (1h: 90 days of training, 30-day windows, a 30-day
calibration tail; 5m: 5 days, 1-day windows, a 1-day tail; each horizon's embargo), "no
change" as the forecast, 90% normalized conformal intervals with ACI, against the fixed-width
interval of the same rows. Prints the mean over series of coverage, coverage per ex-ante
volatility tercile (``rv_24``), the worst block (30 days at 1h, a day at 5m), the blocks below
80%, and the Winkler gain over the fixed width (with its worst series).

Each window's sigma is refitted on its training rows. Variants:

* ``unit``: :mod:`candlecast.evaluation.interval_sigma` with one ACI state (the intervals
  before the bins);
* ``mondrian``: the same sigma, one ACI state per tercile bin of ``rv_24`` (edges from each
  window's training rows; :func:`candlecast.evaluation.intervals.adaptive_intervals` with
  ``bins``: the product); ``mondrian2`` and ``mondrian5`` with two and five bins;
* ``scaled q``/``scaled var``: one ACI state, sigma times a fixed per-bin scale fitted on the
  window's training rows (the bin's 90% quantile of ``|y| / sigma`` over the pooled one, or
  the square root of the bin's mean ``realized variance / sigma^2``); ``scaled oos``: the
  scales from the last 2,000 out-of-sample scores realized before the window;
* ``free``: the log-linear sigma with free non-negative weights (mean reversion to the
  training window's level); at 1h also ``unit+long`` and ``free+long`` with the long HAR
  window (a month) as a fourth column, alone and with ``mondrian``, and ``har``: the
  volatility target's HAR-RV baseline (day, week, month; least squares in logs) as the sigma.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

PAIRS = ["ETH", "LTC", "ADA", "DASH", "ETC", "NXT", "TRX", "XLM", "XMR", "ZEC"]
SHARED = Path("/work/shared/data/freqtrade")
REPO = Path(__file__).resolve().parents[1]
HOURLY = REPO / "data/bundled/BTC_USD-Hourly.csv"
#: The first forecast time held out of tuning on the hourly file.
HELD_OUT = pd.Timestamp("2019-07-01", tz="UTC")
#: (train, test, calibration) rows per timeframe.
WINDOWS = {"1h": (2160, 720, 720), "5m": (1440, 288, 288)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", default="1,4,24")
    parser.add_argument("--data", default="1h,5m")
    args = parser.parse_args()
    from candlecast.data.importers import read_history

    for data in args.data.split(","):
        if data == "1h":
            candles = read_history(HOURLY)
            times = pd.to_datetime(candles["ts"], unit="ms", utc=True)
            series = [candles[times < HELD_OUT].reset_index(drop=True)]
        else:
            series = [read_history(SHARED / f"{pair}_BTC-5m.feather") for pair in PAIRS]
        for horizon in (int(h) for h in args.horizons.split(",")):
            show(data, horizon, [score(candles, data, horizon) for candles in series])


def show(data: str, horizon: int, tables: list[dict[str, tuple[float, ...]]]) -> None:
    print(f"\n== {data}, h = {horizon}, {len(tables)} series")
    print(f"{'variant':<20}{'cover':>7}{'low':>7}{'mid':>7}{'high':>7}{'worst':>8}"
          f"{'<80%':>8}{'winkler':>9}{'worst':>8}")  # fmt: skip
    for name in tables[0]:
        table = np.array([t[name] for t in tables])
        mean = table.mean(axis=0)
        print(
            f"{name:<20}{mean[0]:>7.3f}{mean[1]:>7.3f}{mean[2]:>7.3f}{mean[3]:>7.3f}"
            f"{table[:, 4].min():>8.3f}{int(table[:, 5].sum()):>4}/{int(table[:, 7].sum()):<3}"
            f"{mean[6]:>+9.1%}{table[:, 6].min():>+8.1%}"
        )


def score(candles: pd.DataFrame, timeframe: str, horizon: int) -> dict[str, tuple[float, ...]]:
    """Coverage, terciles, worst block, blocks below 80% and Winkler gain of each variant."""
    from candlecast.evaluation import interval_sigma
    from candlecast.evaluation import intervals as iv
    from candlecast.evaluation.walkforward import walk_forward
    from candlecast.features.volatility import har_windows
    from candlecast.modeling.target_evaluation import REALIZED_VARIANCE, target_frame
    from candlecast.targets import ReturnTarget

    target = ReturnTarget(horizon)
    frame = target_frame(candles, timeframe, "tune:X/Y", target)
    columns = interval_sigma.sigma_columns(timeframe)
    long = f"rv_{har_windows(timeframe)[2]}" if timeframe == "1h" else None  # 5m: a week
    frame = frame.dropna(subset=[*columns, iv.EX_ANTE_COLUMN, *([long] if long else [])])
    frame = frame.reset_index(drop=True)
    train, test, calibration_rows = WINDOWS[timeframe]
    folds = walk_forward(len(frame), train=train, test=test, gap=target.embargo)
    tail = folds[0].train[-calibration_rows:]
    before = folds[0].train[: len(folds[0].train) - calibration_rows - target.embargo]
    pieces = [(before, tail), *((fold.train, fold.test) for fold in folds)]
    y = frame["target"].to_numpy(np.float64)
    realized = frame[REALIZED_VARIANCE].to_numpy(np.float64)
    basis = frame[iv.EX_ANTE_COLUMN].to_numpy(np.float64)

    def sigma_of(cols: list[str], free: bool | str = False, scale: str = "") -> np.ndarray:
        values = frame[cols].to_numpy(np.float64)
        out = np.full(len(frame), np.nan)
        fitter = {False: interval_sigma.fit_sigma, True: fit_free, "har": fit_har}[free]
        for fit_rows, rows in pieces:
            fit = fitter(values[fit_rows], realized[fit_rows], cols)
            out[rows] = fit.sigma(values[rows])
            if scale:
                fitted = fit.sigma(values[fit_rows])
                edges = iv.bin_edges(basis[fit_rows])
                ratio = (
                    np.abs(y[fit_rows]) / fitted if scale == "q" else realized[fit_rows] / fitted**2
                )
                scales = bin_scales(iv.volatility_bins(basis[fit_rows], edges), ratio, scale)
                out[rows] *= scales[iv.volatility_bins(basis[rows], edges)]
        return out

    def bins_of(count: int) -> np.ndarray:
        out = np.zeros(len(frame), np.int64)
        for fit_rows, rows in pieces:
            out[rows] = iv.volatility_bins(basis[rows], iv.bin_edges(basis[fit_rows], count))
        return out

    unit = sigma_of(columns)
    runs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "unit": (unit, None),
        "mondrian": (unit, bins_of(3)),
        "mondrian2": (unit, bins_of(2)),
        "mondrian5": (unit, bins_of(5)),
        "scaled q": (sigma_of(columns, scale="q"), None),
        "scaled var": (sigma_of(columns, scale="var"), None),
        "scaled oos": (oos_scaled(y, unit, basis, pieces, horizon), None),
        "free": (sigma_of(columns, free=True), None),
    }
    if long:
        for name, free in (("unit+long", False), ("free+long", True)):
            sigma = sigma_of([*columns, long], free=free)
            runs[name] = (sigma, None)
            runs[f"mondrian {name}"] = (sigma, bins_of(3))
        har = sigma_of([f"rv_{w}" for w in har_windows(timeframe)], free="har")
        runs["har"], runs["mondrian har"] = (har, None), (har, bins_of(3))
    fixed = fixed_width(y, tail, folds, horizon)
    return {
        name: judged(y, sigma, bins, tail, folds, horizon, fixed, frame, basis, timeframe)
        for name, (sigma, bins) in runs.items()
    }


def judged(y, sigma, bins, tail, folds, horizon, fixed, frame, basis, timeframe):
    from candlecast.evaluation import intervals as iv

    scored = np.concatenate([fold.test for fold in folds])
    bands = iv.adaptive_intervals(
        np.zeros(len(scored)),
        sigma[scored],
        y[scored],
        coverage=0.9,
        horizon=horizon,
        calibration=np.abs(y[tail]) / sigma[tail],
        bins=None if bins is None else bins[scored],
        calibration_bins=None if bins is None else bins[tail],
    )
    scoring = interval_scorer(y, scored, frame, basis, timeframe)
    s, base = scoring(bands.lower, bands.upper), scoring(-fixed, fixed)
    return (
        s.rate,
        *s.by_volatility_tercile,
        s.rolling_30d_min,
        s.blocks_below_80,
        1 - s.winkler / base.winkler,
        s.blocks,
    )


def interval_scorer(y, scored, frame, basis, timeframe) -> Callable:
    from candlecast.evaluation import intervals as iv

    times = pd.DatetimeIndex(frame["event_timestamp"].iloc[scored])

    def scoring(lower: np.ndarray, upper: np.ndarray) -> iv.IntervalScores:
        return iv.interval_scores(
            y[scored],
            lower,
            upper,
            level=0.9,
            ex_ante_volatility=basis[scored],
            times=times,
            block_days=30 if timeframe == "1h" else 1,
        )

    return scoring


def fixed_width(y, tail, folds, horizon) -> np.ndarray:
    """Today's fixed half-width per scored row: one per window, from what was realized."""
    from candlecast.evaluation import metrics

    known, halves = [y[tail]], []
    for fold in folds:
        half = metrics.conformal_half_width(np.concatenate(known), 0.9)
        halves.append(np.full(len(fold.test), half))
        known.append(y[fold.test[: len(fold.test) - horizon]])
    return np.concatenate(halves)


def bin_scales(bins: np.ndarray, ratio: np.ndarray, how: str) -> np.ndarray:
    """Each bin's scale of sigma: its 90% quantile of ``ratio`` over the pooled one (``q``),
    or the square root of its mean over the pooled mean (``var``)."""
    if how == "q":
        pooled = np.quantile(ratio, 0.9)
        return np.array([np.quantile(ratio[bins == k], 0.9) / pooled for k in range(3)])
    return np.sqrt(np.array([ratio[bins == k].mean() / ratio.mean() for k in range(3)]))


def oos_scaled(y, sigma, basis, pieces, horizon, depth=2000):
    """Sigma times per-bin scales from the last ``depth`` out-of-sample scores realized before
    each window (the calibration tail's from its own); edges from its training rows."""
    from candlecast.evaluation import intervals as iv

    out = sigma.copy()
    (fit0, tail), *windows = pieces
    known = list(tail)
    for fit_rows, rows in [(fit0, tail), *windows]:
        pool = np.array(known[-depth:])
        edges = iv.bin_edges(basis[fit_rows])
        ratio = np.abs(y[pool]) / sigma[pool]
        scales = bin_scales(iv.volatility_bins(basis[pool], edges), ratio, "q")
        out[rows] = sigma[rows] * scales[iv.volatility_bins(basis[rows], edges)]
        if rows is not tail:
            known.extend(rows[: len(rows) - horizon])
    return out


def fit_har(values, realized, columns):
    """The volatility target's HAR baseline as the sigma: least squares of the log realized
    variance on the day, week and month windows' logs, non-negative slopes, smeared
    (:class:`candlecast.modeling.kinds.volatility_baselines.Har`'s fit)."""
    from scipy.optimize import nnls

    from candlecast.evaluation.interval_sigma import FLOOR, SigmaFit

    logs = np.log(np.maximum(values, FLOOR))
    label = np.log(np.maximum(realized, FLOOR))
    weights, _ = nnls(logs - logs.mean(axis=0), label - label.mean())
    intercept = label.mean() - float(logs.mean(axis=0) @ weights)
    residual = label - logs @ weights - intercept
    intercept += float(np.log(np.mean(np.exp(residual))))
    return SigmaFit(tuple(columns), tuple(float(w) for w in weights), intercept)


def fit_free(values, realized, columns):
    """The log-linear sigma with free non-negative weights (bench/tune_interval_sigma.py)."""
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from tune_interval_sigma import fit_free as free

    return free(values, realized, columns)


if __name__ == "__main__":
    main()
