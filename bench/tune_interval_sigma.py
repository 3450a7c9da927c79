"""How the return intervals' sigma was chosen: on the freqtrade 5m pairs, never on the BTC/USD
file the figures are reported on.

    .venv/bin/python bench/tune_interval_sigma.py [--horizons 1,4,24] [FILE ...]

For each file and horizon, walk-forward on 5m candles (5 days of training, 1-day windows, the
embargo of the horizon), "no change" as the forecast, 90% normalized conformal intervals with
ACI scaled by each sigma source, against the fixed-width interval of the same rows. Prints the
mean over files of coverage, coverage per ex-ante volatility tercile, the worst day and the
Winkler gain over the fixed width (with its worst file).

Sources: ``ewma`` (sqrt(h * EWMA variance), the previous sigma) and ``fitted``
(:mod:`candlecast.evaluation.interval_sigma`, refitted per window as evaluation does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PAIRS = ["ETH", "LTC", "ADA", "DASH", "ETC", "NXT", "TRX", "XLM", "XMR", "ZEC"]
#: The ten freqtrade 5m pairs (only ADA and TRX are bundled, see data/bundled/DATA.md).
SHARED = Path("/work/shared/data/freqtrade")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", default="1,4,24")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    files = args.files or [SHARED / f"{pair}_BTC-5m.feather" for pair in PAIRS]
    for horizon in (int(h) for h in args.horizons.split(",")):
        rows: dict[str, list[tuple[float, ...]]] = {}
        for path in files:
            for name, scores in score_file(path, horizon).items():
                rows.setdefault(name, []).append(scores)
        print(f"\n== 5m, h = {horizon}, {len(files)} files")
        print(f"{'sigma':<8}{'cover':>7}{'low':>7}{'mid':>7}{'high':>7}{'worst day':>11}"
              f"{'winkler gain':>14}{'worst file':>12}")  # fmt: skip
        for name, values in rows.items():
            table = np.array(values)
            mean = table.mean(axis=0)
            print(
                f"{name:<8}{mean[0]:>7.3f}{mean[1]:>7.3f}{mean[2]:>7.3f}{mean[3]:>7.3f}"
                f"{table[:, 4].min():>11.3f}{mean[5]:>+14.1%}{table[:, 5].min():>+12.1%}"
            )


def score_file(path: Path, horizon: int) -> dict[str, tuple[float, ...]]:
    """Coverage, terciles, worst day and Winkler gain of each sigma source on one file."""
    from candlecast.data.importers import read_history
    from candlecast.evaluation import intervals as iv
    from candlecast.evaluation import metrics
    from candlecast.evaluation.walkforward import walk_forward
    from candlecast.modeling.evaluation_results import EvaluationSettings
    from candlecast.modeling.target_evaluation import interval_sigmas, target_frame
    from candlecast.targets import ReturnTarget

    target = ReturnTarget(horizon)
    frame = target_frame(read_history(path), "5m", "tune:X/BTC", target)
    settings = EvaluationSettings(train_rows=1440, test_rows=288, calibration_rows=288)
    positions = np.arange(len(frame))
    folds = walk_forward(len(frame), train=1440, test=288, gap=target.embargo)
    scored = np.concatenate([fold.test for fold in folds])
    calibration = folds[0].train[-settings.calibration_rows :]
    y = frame["target"].to_numpy(np.float64)
    ex_ante = frame["rv_24"].to_numpy(np.float64)[scored]
    times = pd.DatetimeIndex(frame["event_timestamp"].iloc[scored])
    sigmas = {
        "ewma": np.sqrt(np.maximum(frame["ewma_var"].to_numpy(np.float64) * horizon, 1e-10)),
        "fitted": interval_sigmas(frame, positions, folds, settings, target, "5m"),
    }
    out = {}
    for name, sigma in sigmas.items():
        bands = iv.adaptive_intervals(
            np.zeros(len(scored)),
            sigma[scored],
            y[scored],
            coverage=0.9,
            horizon=horizon,
            calibration=np.abs(y[calibration]) / sigma[calibration],
        )
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
        name: (s.rate, *s.by_volatility_tercile, s.rolling_30d_min, 1 - s.winkler / fixed.winkler)
        for name, s in out.items()
    }


if __name__ == "__main__":
    main()
