"""How the return intervals' sigma was chosen: on the freqtrade 5m pairs, never on the BTC/USD
file the figures are reported on.

    .venv/bin/python bench/tune_interval_sigma.py [--horizons 1,4,24] [--long] [FILE ...]

For each file and horizon, walk-forward on 5m candles (5 days of training, 1-day windows, the
embargo of the horizon), "no change" as the forecast, 90% normalized conformal intervals with
ACI scaled by each sigma source, against the fixed-width interval of the same rows. Prints the
mean over files of coverage, coverage per ex-ante volatility tercile, the worst day (this
data's 30-day block: a window is a fifth of its training rows, as 30 days are of 90), the
days below 80%, and the Winkler gain over the fixed width (with its worst file).

Sigma sources (each refitted per window as evaluation does), first all with ACI's old step
``gamma / h``:

* ``ewma``: sqrt(h * EWMA variance), the sigma before the fitted ones;
* ``free``: the EWMA and the short and middle HAR windows, log-linear with free non-negative
  weights (the sigma before this one: mean-reverting to the training window's level);
  ``free+fast`` with ``rv_4`` (the last four candles) as a fourth column, ``free+long`` with
  the long HAR window (``--long`` only: at 5m it is a week, so the first seven of the twenty
  days have no row and every source is scored on the rest);
* ``unit``: :mod:`candlecast.evaluation.interval_sigma` (the same columns, weights summing to
  1: no pull to the window's level); ``unit+long`` with the long window (``--long``);
* ``geo``: the geometric mean of ``free`` and ``ewma`` (half the pull); ``max``: the larger.

Then ACI variants of ``free`` and ``unit``: ``/sqrt`` (step ``gamma / sqrt(h)``,
:func:`candlecast.evaluation.intervals.aci_gamma`: ``unit /sqrt`` is the product), ``/1`` (step
``gamma``) and ``w500`` (the quantile of the last 500 scores instead of 2000).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
import pandas as pd

PAIRS = ["ETH", "LTC", "ADA", "DASH", "ETC", "NXT", "TRX", "XLM", "XMR", "ZEC"]
#: The ten freqtrade 5m pairs (only ADA and TRX are bundled, see data/bundled/DATA.md).
SHARED = Path("/work/shared/data/freqtrade")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", default="1,4,24")
    parser.add_argument("--long", action="store_true", help="add fit+long (fewer rows)")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    from candlecast.errors import NotEnoughHistoryError

    files = args.files or [SHARED / f"{pair}_BTC-5m.feather" for pair in PAIRS]
    for horizon in (int(h) for h in args.horizons.split(",")):
        rows: dict[str, list[tuple[float, ...]]] = {}
        used = 0
        for path in files:
            try:
                scored = score_file(path, horizon, args.long)
            except NotEnoughHistoryError as exc:  # --long on a file with a gap
                print(f"{path.name}: skipped ({exc})")
                continue
            used += 1
            for name, scores in scored.items():
                rows.setdefault(name, []).append(scores)
        print(f"\n== 5m, h = {horizon}, {used} files")
        print(f"{'sigma':<14}{'cover':>7}{'low':>7}{'mid':>7}{'high':>7}{'worst day':>11}"
              f"{'<80%':>8} {'winkler gain':>12}{'worst file':>12}")  # fmt: skip
        for name, values in rows.items():
            table = np.array(values)
            mean = table.mean(axis=0)
            print(
                f"{name:<14}{mean[0]:>7.3f}{mean[1]:>7.3f}{mean[2]:>7.3f}{mean[3]:>7.3f}"
                f"{table[:, 4].min():>11.3f}{int(table[:, 5].sum()):>4}/{int(table[:, 7].sum()):<3}"
                f" {mean[6]:>+12.1%}{table[:, 6].min():>+12.1%}"
            )


def fitted_sigmas(frame, positions, folds, settings, target, columns, unit=True):
    """Each scored row's sigma from a fit on its window's training rows (as
    :func:`~candlecast.modeling.target_evaluation.interval_sigmas`, any columns)."""
    from candlecast.evaluation import interval_sigma
    from candlecast.modeling.target_evaluation import REALIZED_VARIANCE, _calibration_rows

    values = frame[columns].to_numpy(np.float64)[positions]
    realized = frame[REALIZED_VARIANCE].to_numpy(np.float64)[positions]
    out = np.full(len(positions), np.nan)
    tail, before = _calibration_rows(folds[0], settings, target)
    for fit_rows, rows in [(before, tail), *((fold.train, fold.test) for fold in folds)]:
        fit = (
            interval_sigma.fit_sigma(values[fit_rows], realized[fit_rows], columns)
            if unit
            else (fit_free(values[fit_rows], realized[fit_rows], columns))
        )
        out[rows] = fit.sigma(values[rows])
    return out


def fit_free(values, realized, columns):
    """The sigma before: QLIKE fit of the log-linear variance, free non-negative weights."""
    from scipy.optimize import minimize

    from candlecast.evaluation.interval_sigma import FLOOR, SigmaFit

    logs = np.log(np.maximum(values, FLOOR))
    centred = logs - logs.mean(axis=0)
    target = np.maximum(realized, 0.0)

    def level(linear):
        return float(np.log(max(np.mean(target * np.exp(-linear)), FLOOR)))

    def qlike(weights):
        linear = centred @ weights
        shift = level(linear)
        return float(np.mean(target * np.exp(-linear - shift) + linear + shift))

    start = np.full(len(columns), 1.0 / len(columns))
    found = minimize(qlike, start, method="L-BFGS-B", bounds=[(0.0, None)] * len(columns))
    weights = np.asarray(found.x)
    intercept = level(centred @ weights) - float(logs.mean(axis=0) @ weights)
    return SigmaFit(tuple(columns), tuple(float(w) for w in weights), intercept)


def score_file(path: Path, horizon: int, long: bool) -> dict[str, tuple[float, ...]]:
    """Coverage, terciles, worst day, days below 80% and Winkler gain of each source."""
    from candlecast.data.importers import read_history
    from candlecast.evaluation import interval_sigma, metrics
    from candlecast.evaluation import intervals as iv
    from candlecast.evaluation.walkforward import walk_forward
    from candlecast.features.volatility import har_windows
    from candlecast.modeling.evaluation_results import EvaluationSettings
    from candlecast.modeling.target_evaluation import target_frame
    from candlecast.targets import ReturnTarget

    target = ReturnTarget(horizon)
    frame = target_frame(read_history(path), "5m", "tune:X/BTC", target)
    columns = interval_sigma.sigma_columns("5m")
    long_column = f"rv_{har_windows('5m')[2]}"
    if long:
        frame = frame.dropna(subset=[long_column]).reset_index(drop=True)
    settings = EvaluationSettings(train_rows=1440, test_rows=288, calibration_rows=288)
    positions = np.arange(len(frame))
    folds = walk_forward(len(frame), train=1440, test=288, gap=target.embargo)
    scored = np.concatenate([fold.test for fold in folds])
    calibration = folds[0].train[-settings.calibration_rows :]
    y = frame["target"].to_numpy(np.float64)
    ex_ante = frame["rv_24"].to_numpy(np.float64)[scored]
    times = pd.DatetimeIndex(frame["event_timestamp"].iloc[scored])
    fit = functools.partial(fitted_sigmas, frame, positions, folds, settings, target)
    ewma = np.sqrt(np.maximum(frame["ewma_var"].to_numpy(np.float64) * horizon, 1e-10))
    free = fit(columns, unit=False)
    unit = fit(columns)
    sigmas = {
        "ewma": ewma,
        "free": free,
        "free+fast": fit([*columns, "rv_4"], unit=False),
        "unit": unit,
        "geo": np.sqrt(free * ewma),
        "max": np.maximum(free, ewma),
    }
    if long:
        sigmas["free+long"] = fit([*columns, long_column], unit=False)
        sigmas["unit+long"] = fit([*columns, long_column])
    old = iv.ACI_GAMMA / horizon
    runs = {name: (sigma, old, iv.SCORE_WINDOW) for name, sigma in sigmas.items()}
    for name, sigma in (("free", free), ("unit", unit)):
        runs[f"{name} /sqrt"] = (sigma, iv.aci_gamma(horizon), iv.SCORE_WINDOW)
        runs[f"{name} /1"] = (sigma, iv.ACI_GAMMA, iv.SCORE_WINDOW)
        runs[f"{name} w500"] = (sigma, old, 500)
    out = {}
    for name, (sigma, gamma, window) in runs.items():
        iv.SCORE_WINDOW = window
        bands = iv.adaptive_intervals(
            np.zeros(len(scored)),
            sigma[scored],
            y[scored],
            coverage=0.9,
            horizon=horizon,
            calibration=np.abs(y[calibration]) / sigma[calibration],
            gamma=gamma,
        )
        iv.SCORE_WINDOW = 2000
        out[name] = iv.interval_scores(
            y[scored], bands.lower, bands.upper, level=0.9, ex_ante_volatility=ex_ante,
            times=times, block_days=1,
        )  # fmt: skip
    known, halves = [y[calibration]], []
    for fold in folds:  # the fixed width: one half-width per window from what was realized
        halves.append(
            np.full(len(fold.test), metrics.conformal_half_width(np.concatenate(known), 0.9))
        )
        known.append(y[fold.test[: len(fold.test) - horizon]])
    half = np.concatenate(halves)
    fixed = iv.interval_scores(
        y[scored], -half, half, level=0.9, ex_ante_volatility=ex_ante, times=times, block_days=1
    )
    return {
        name: (
            s.rate,
            *s.by_volatility_tercile,
            s.rolling_30d_min,
            s.blocks_below_80,
            1 - s.winkler / fixed.winkler,
            s.blocks,
        )
        for name, s in out.items()
    }


if __name__ == "__main__":
    main()
