"""What the promotion gate decides at successive cut points of real hourly BTC/USD.

    .venv/bin/python bench/bench_gate.py [--start 2019-01-01] [--cuts 9] [--every-days 30]
                                         [--kinds lightgbm] [--train-days 120]

In a throwaway CANDLECAST_HOME (its own MLflow store), the training window ending at each cut
point is fitted and scored exactly as the pipeline does (every kind, chronological holdout,
refit), then the gate decides against persistence and the champion of the cut before. Prints
one line per cut: the outcome, the challenger's RMSE ratio to persistence and the p-values.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", default="2019-01-01")
    parser.add_argument("--cuts", type=int, default=9)
    parser.add_argument("--every-days", type=int, default=30)
    parser.add_argument("--kinds", default="lightgbm")
    parser.add_argument("--train-days", type=int, default=120)
    args = parser.parse_args()
    os.environ["CANDLECAST_HOME"] = tempfile.mkdtemp(prefix="candlecast-gate-")

    from candlecast.config import PairConfig
    from candlecast.data.importers import read_history
    from candlecast.modeling import training
    from candlecast.modeling.evaluate import evaluation_frame
    from candlecast.modeling.promotion import promote

    pair = PairConfig(
        symbol="BTC/USD",
        exchange="replay",
        replay_file=REPO / "data" / "bundled" / "BTC_USD-Hourly.csv",
        training={"train_days": args.train_days, "kinds": args.kinds.split(",")},
    )
    frame = evaluation_frame(read_history(pair.replay_file), "1h", pair.stream.market_key)
    first = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    print("cut | outcome | champion kind | challenger/persistence rmse | p rmse | p mae | s")
    for number in range(args.cuts):
        end = first + timedelta(days=number * args.every_days)
        window = frame[
            (frame["event_timestamp"] > end - timedelta(days=args.train_days))
            & (frame["event_timestamp"] <= end)
        ]
        started = time.perf_counter()
        run = training.fit_and_log(pair, window, end).challenger
        decision = promote(pair, run.run_id, run.model_uri)
        tests = {c["metric"]: c for c in decision.evidence["challenger_vs_persistence"]}
        ratio = tests["rmse"]["score"] / tests["rmse"]["opponent"]
        print(
            f"{end:%Y-%m-%d} | {decision.outcome} | {decision.champion_kind} | {ratio:.5f} | "
            f"{tests['rmse']['p_value']:.3f} | {tests['mae']['p_value']:.3f} | "
            f"{time.perf_counter() - started:.1f}"
        )


if __name__ == "__main__":
    main()
