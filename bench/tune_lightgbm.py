"""How the LightGBM kind's default parameters were chosen: walk-forward on the ten freqtrade 5m
pairs, never on the BTC/USD file the figures are reported on, nor on a stream's holdout.

    .venv/bin/python bench/tune_lightgbm.py [--candidates NAME,...] [FILE ...]

For each file and candidate parameter set: the next candle's return, walk-forward (the
evaluation's own windows: 2,160 training rows, 720-row windows), LightGBM beside persistence.
Prints, as the mean over files: the RMSE ratio to persistence, the share of files where it is
below 1, the one-sided Diebold-Mariano p-value's median, and how much the forecasts move (their
standard deviation over the realized returns' standard deviation: a model that forecasts a
constant has about 0). A default must not lose to persistence on average; among those, the one
that moves most is the one that learns most.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

PAIRS = ["ETH", "LTC", "ADA", "DASH", "ETC", "NXT", "TRX", "XLM", "XMR", "ZEC"]
#: The ten freqtrade 5m pairs (only ADA and TRX are bundled, see data/bundled/DATA.md).
SHARED = Path("/work/shared/data/freqtrade")

#: Candidate parameter sets: the shipped defaults and bolder ones (more trees, a faster rate,
#: more leaves, less shrinkage). Early stopping on the training window's tail decides the trees.
CANDIDATES: dict[str, dict[str, Any]] = {
    "shipped": {},
    "moderate": {"learning_rate": 0.02, "num_leaves": 8, "min_child_samples": 200},
    "bold": {
        "learning_rate": 0.05,
        "n_estimators": 400,
        "num_leaves": 16,
        "min_child_samples": 100,
        "reg_lambda": 5.0,
    },
    "no_stopping": {"learning_rate": 0.02, "num_leaves": 8, "early_stopping_rounds": 0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    files = args.files or [SHARED / f"{pair}_BTC-5m.feather" for pair in PAIRS]
    names = args.candidates.split(",")
    table: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for path in files:
        frame = _frame(path)
        for name in names:
            table[name].append(score(frame, CANDIDATES[name]))
            ratio, p, moves = table[name][-1]
            print(f"{path.name:<24}{name:<12} rmse ratio {ratio:.4f}  p {p:.3f}  moves {moves:.3f}")
    print(f"\n== next candle's return, {len(files)} files")
    print(f"{'params':<12}{'rmse ratio':>11}{'files < 1':>10}{'median p':>10}{'moves':>8}")
    for name, rows in table.items():
        values = np.array(rows)
        print(
            f"{name:<12}{values[:, 0].mean():>11.4f}{(values[:, 0] < 1).mean():>10.0%}"
            f"{np.median(values[:, 1]):>10.3f}{values[:, 2].mean():>8.3f}"
        )


def _frame(path: Path) -> tuple[Any, str]:
    from candlecast.data.importers import read_history
    from candlecast.modeling.evaluate import evaluation_frame, infer_timeframe

    candles = read_history(path)
    timeframe = infer_timeframe(candles["ts"])
    return evaluation_frame(candles, timeframe, path.stem), timeframe


def score(data: tuple[Any, str], params: dict[str, Any]) -> tuple[float, float, float]:
    """RMSE ratio to persistence, the DM p-value against it, and the forecasts' movement."""
    from candlecast.modeling.evaluate import evaluate_kinds

    frame, timeframe = data
    report = evaluate_kinds(frame, ["lightgbm"], timeframe, params={"lightgbm": params})
    kind = report.kinds["lightgbm"]
    moves = float(np.std(kind.predicted) / np.std(report.target))
    return kind.ratios.rmse, kind.diebold_mariano.p_value, moves


if __name__ == "__main__":
    main()
