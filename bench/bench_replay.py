"""The replay of the retraining loop over a year of the bundled BTC/USD hourly candles.

    .venv/bin/python bench/bench_replay.py [--start 2021-03-01] [--end 2022-03-01]
        [--cadence 1d --cadence 7d] [--kinds lightgbm]

The configured BTC/USD stream's settings (``train_days`` 120, the gate's and monitoring's
defaults), the default kind (LightGBM), each policy (never, cadence, triggers) over the same
candles, once per cadence: the default ``training.schedule`` (daily: with the daily monitor
check, triggers cannot fire before the cadence does) and weekly (they can). Nothing is tuned
on the replayed span. Prints the wall time per simulated month, then per policy the realized
RMSE ratio to persistence, MAE ratio, directional accuracy against the majority rate, 90%
interval coverage, retrains and compute, and the Diebold-Mariano comparison of the policies.
Aim: a year in minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BTC_FILE = REPO / "data" / "bundled" / "BTC_USD-Hourly.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", default="2021-03-01")
    parser.add_argument("--end", default="2022-03-01")
    parser.add_argument("--cadence", action="append", default=None)
    parser.add_argument("--kinds", default="lightgbm")
    args = parser.parse_args()

    import pandas as pd

    from candlecast.config import PairConfig
    from candlecast.data.importers import read_history
    from candlecast.monitoring.replay import history_of, parse_period, replay
    from candlecast.monitoring.replay_report import report

    kinds = args.kinds.split(",")
    pair = PairConfig(
        symbol="BTC/USD",
        exchange="replay",
        replay_file=BTC_FILE,
        timeframe="1h",
        training={"train_days": 120, "kinds": kinds},
    )
    began = time.perf_counter()
    history = history_of(read_history(BTC_FILE), "1h", pair.stream.market_key)
    print(f"features of {len(history.frame)} candles: {time.perf_counter() - began:.1f} s")
    span = tuple(int(pd.Timestamp(t, tz="UTC").value // 1_000_000) for t in (args.start, args.end))
    months = (span[1] - span[0]) / (30.4375 * 86_400_000)
    for cadence in args.cadence or ["1d", "7d"]:
        began = time.perf_counter()
        found = replay(history, pair, kinds, (span[0], span[1]), cadence_ms=parse_period(cadence))
        wall = time.perf_counter() - began
        payload = report(found, pair.stream.key)
        print(
            f"\ncadence {cadence}, {args.start} .. {args.end} ({months:.1f} months, "
            f"{payload['forecasts']} forecasts, kinds {args.kinds}): {wall:.1f} s wall, "
            f"{wall / months:.1f} s per simulated month (3 policies)"
        )
        print(
            "policy   | rmse ratio | mae ratio | direction / majority | coverage | retrains "
            "| triggered | champions changed | compute s"
        )
        for name, figures in payload["policies"].items():
            real = figures["realized"]
            changed = sum(t["changed_champion"] for t in payload["timeline"] if t["policy"] == name)
            print(
                f"{name:8s} | {real['rmse_ratio']:.6f}   | {real['mae_ratio']:.6f}  | "
                f"{_fmt(real['directional_accuracy'])} / {_fmt(real['majority_rate'])}      | "
                f"{real['coverage']:.4f}   | {figures['retrains']:8d} | "
                f"{figures['triggered_retrains']:9d} | {changed:17d} | {figures['compute_s']:.1f}"
            )
        for key, test in payload["comparison"].items():
            if key != "verdict":
                print(
                    f"{key}: loss {test['relative_loss_difference'] or 0:+.3%}, DM stat "
                    f"{_fmt(test['statistic'])}, p(better) {_fmt(test['p_value'])}, "
                    f"p(worse) {_fmt(test['p_value_worse'])}: {test['verdict']}"
                )
        print(f"verdict: {payload['comparison']['verdict']}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
