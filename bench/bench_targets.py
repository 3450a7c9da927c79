"""What can be forecast, on the bundled hourly BTC/USD file (2018-05 .. 2022-03), walk-forward
with the embargo of each horizon, every window refitted (90 days of training, 30-day windows).

    .venv/bin/python bench/bench_targets.py [--horizons 1,4,24] [--return-horizons 1]
        [--kinds lightgbm] [--file PATH] [--timeframe 1h]

Volatility, per horizon and kind: QLIKE, its ratio to persistence and to EWMA, the one-sided
Diebold-Mariano p-value on QLIKE against EWMA and against the best baseline, and the share of
windows won against EWMA. Returns, per horizon: the 90% interval of each kind (normalized
conformal with ACI per ex-ante volatility tercile, scaled by the fitted sigma of
:mod:`candlecast.evaluation.interval_sigma`) against the fixed-width split conformal interval:
coverage overall, per ex-ante volatility tercile, the worst 30-day block and the blocks below
80%, Winkler; then the same for the forecasts from ``--held-out`` (2019-07-01) on alone.

The intervals' settings were tuned on the freqtrade 5m pairs and on this file's forecasts
before 2019-07-01 only (``bench/tune_interval_sigma.py``, ``bench/tune_interval_bins.py``): the
held-out table is the part of the sample none of them was chosen on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", default="1,4,24")
    parser.add_argument("--return-horizons", default="1")
    parser.add_argument("--kinds", default="lightgbm")
    parser.add_argument("--file", type=Path, default=REPO / "data/bundled/BTC_USD-Hourly.csv")
    parser.add_argument("--timeframe", default="1h")
    parser.add_argument("--held-out", default="2019-07-01", help="first untuned forecast time")
    parser.add_argument("--json", type=Path, help="also write every report here")
    args = parser.parse_args()

    from candlecast.data.importers import read_history
    from candlecast.evaluation import interval_sigma
    from candlecast.modeling.target_evaluation import evaluate_target, target_frame
    from candlecast.modeling.target_report import target_report_dict
    from candlecast.targets import get_target

    candles = read_history(args.file)
    kinds = [k for k in args.kinds.split(",") if k]
    reports = {}
    print(f"{args.file.name}: {len(candles)} candles, {args.timeframe}")
    for name, horizons in (("volatility", args.horizons), ("return", args.return_horizons)):
        for horizon in (int(h) for h in horizons.split(",") if h):
            target = get_target(name, horizon)
            started = time.perf_counter()
            frame = target_frame(candles, args.timeframe, "bench:BTC/USD", target)
            result = evaluate_target(frame, target, kinds, args.timeframe)
            report = target_report_dict(result)
            seconds = time.perf_counter() - started
            reports[target.key] = report
            print(
                f"\n== {target.key}: {report['windows']} windows, "
                f"{report['rows']['scored']} forecasts, {seconds:.0f} s"
            )
            if name == "return":
                columns = ", ".join(interval_sigma.sigma_columns(args.timeframe))
                print(f"sigma: {interval_sigma.SOURCE} of {columns}, refitted per window")
            if name == "volatility":
                print_volatility(report)
            else:
                print_intervals(report)
                print_held_out(result, pd.Timestamp(args.held_out, tz="UTC"))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


def print_volatility(report: dict) -> None:
    kinds = report["kinds"]
    baselines = [k for k, row in kinds.items() if row["baseline"]]
    best = min(baselines, key=lambda k: kinds[k]["qlike"])
    ewma = kinds["ewma"]["qlike"]
    print(
        f"{'kind':<12}{'QLIKE':>8}{'/pers':>8}{'/EWMA':>8}{'DM p vs EWMA':>14}"
        f"{'DM p vs ' + best:>18}{'won vs EWMA':>13}"
    )
    for name, row in kinds.items():
        versus = row["versus"]
        p_ewma = versus.get("ewma", {}).get("dm_p_value")
        p_best = versus.get(best, {}).get("dm_p_value")
        won = versus.get("ewma", {}).get("folds_won")
        print(
            f"{name:<12}{row['qlike']:>8.4f}{row['qlike_ratio']:>8.3f}"
            f"{row['qlike'] / ewma:>8.3f}{_p(p_ewma):>14}{_p(p_best):>18}{_p(won):>13}"
        )
    learned = [k for k in kinds if not kinds[k]["baseline"]]
    best_all = min(kinds, key=lambda k: kinds[k]["qlike"])
    print(
        f"best: {best_all} at {kinds[best_all]['qlike_ratio']:.3f}x persistence (aim <= 0.6); "
        f"best baseline: {best}"
    )
    for name in learned:
        row = kinds[name]
        print(
            f"{name}: {1 - row['qlike_vs_ewma']:+.1%} below EWMA, DM p {row['dm_p_vs_ewma']:.3g}"
            " (aim: >= 5% below, p < 0.05)"
        )


def print_intervals(report: dict) -> None:
    print(
        f"{'kind':<12}{'interval':<12}{'cover':>7}{'low':>7}{'mid':>7}{'high':>7}"
        f"{'worst30d':>9}{'<80%':>6}{'winkler':>10}{'width':>9}"
    )
    for name, row in report["kinds"].items():
        coverage = row["interval_coverage"]
        for label, scores in (("adaptive", coverage), ("fixed", coverage["fixed_width"])):
            terciles = scores["by_volatility_tercile"]
            print(
                f"{name:<12}{label:<12}{scores['rate']:>7.3f}{terciles[0]:>7.3f}"
                f"{terciles[1]:>7.3f}{terciles[2]:>7.3f}{scores['rolling_30d_min']:>9.3f}"
                f"{scores['blocks_below_80']:>4}/{scores['blocks']:<2}{scores['winkler']:>10.5f}"
                f"{scores['mean_width']:>9.5f}"
            )
        gain = 1 - coverage["winkler"] / coverage["fixed_width"]["winkler"]
        print(
            f"{name}: Winkler {gain:+.1%} better than the fixed width (aim >= 10%); "
            f"levels: "
            + ", ".join(f"{lv} -> {s['rate']:.3f}" for lv, s in coverage["levels"].items())
        )


def print_held_out(result, start: pd.Timestamp) -> None:
    """The 90% intervals of the forecasts from ``start`` on (never tuned on), scored alone."""
    from candlecast.evaluation.intervals import interval_scores

    keep = result.times >= start
    print(f"held out (not tuned on): {int(keep.sum())} forecasts from {start.date()} on")
    basis = result.ex_ante_volatility[keep]
    realized, times = result.realized[keep], result.times[keep]
    for name, kind in result.kinds.items():
        if kind.bands is None or kind.fixed_half_width is None:
            continue
        predicted, half = kind.predicted[keep], kind.fixed_half_width[keep]
        pairs = (
            ("adaptive", kind.bands.lower[keep], kind.bands.upper[keep]),
            ("fixed", predicted - half, predicted + half),
        )
        scored = {
            label: interval_scores(
                realized, low, high, level=0.9, ex_ante_volatility=basis, times=times
            )
            for label, low, high in pairs
        }
        for label, s in scored.items():
            t = s.by_volatility_tercile
            print(
                f"{name:<12}{label:<12}{s.rate:>7.3f}{t[0]:>7.3f}{t[1]:>7.3f}{t[2]:>7.3f}"
                f"{s.rolling_30d_min:>9.3f}{s.blocks_below_80:>4}/{s.blocks:<2}"
                f"{s.winkler:>10.5f}{s.mean_width:>9.5f}"
            )
        gain = 1 - scored["adaptive"].winkler / scored["fixed"].winkler
        print(f"{name}: held out, Winkler {gain:+.1%} better than the fixed width")


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


if __name__ == "__main__":
    main()
