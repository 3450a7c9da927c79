"""What the platform's own forecasts cost a live sub-hourly candles run (issue 16 on issue 18's
5m streams).

    .venv/bin/python bench/bench_scoring.py [--candles 24] [--decisions 3] [--targets default]

ETH/BTC 5m from the bundled freqtrade file, in a fresh data directory: a first run trains and
decides (LightGBM, next-candle return), then ``--decisions - 1`` more decisions a day apart,
so the history holds several versions and shadows. With ``--targets default`` the stream has
the default targets (return at 1, 4 and 24 candles, volatility at 1 and 24) instead of the
next-candle return alone, each other target with the champion its first training decided.
Then, one candle at a time as a live 5m stream's candles run does, the candle is materialized
and ``scoring.score`` forecasts it with the champion and the shadow in force, and every other
target with its version in force. Prints the median and worst CPU seconds (this
process's, so other load on the machine does not count) and wall seconds of the scoring step
per candle, beside what a whole 5m candles run costs under the scheduler (:data:`RUN_CPU_S`,
``bench/bench_streams.py --counts 10 --timeframes 5m``; issue 18 started from 2.8).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILE = REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather"
PAIRS = f"""\
pairs:
  - symbol: ETH/BTC
    exchange: binance
    replay_file: {FILE}
    timeframe: 5m
    start: 2018-01-20T00:00:00Z
    training:
      kinds: [lightgbm]
      train_days: 3
      min_train_rows: 300
{{targets}}"""
MAIN_ONLY = "      targets: [{target: return, horizons: [1]}]\n"
DAY0 = datetime(2018, 1, 24, tzinfo=UTC)
#: CPU-seconds of a whole 5m candles run under the scheduler, all processes told, idle
#: subtracted (bench_streams.py, N = 10 streams without decisions, so without scoring).
RUN_CPU_S = 0.78
STEP = timedelta(minutes=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candles", type=int, default=24)
    parser.add_argument("--decisions", type=int, default=3)
    parser.add_argument("--targets", choices=["main", "default"], default="main")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    targets = MAIN_ONLY if args.targets == "main" else ""
    (tmp / "pairs.yaml").write_text(PAIRS.replace("{targets}", targets))
    os.environ["CANDLECAST_HOME"] = str(tmp / "home")
    os.environ["CANDLECAST_PAIRS"] = str(tmp / "pairs.yaml")

    from candlecast.config import load_pairs
    from candlecast.modeling import history
    from candlecast.monitoring import scoring
    from candlecast.orchestration import stages

    (pair,) = load_pairs().pairs
    end = DAY0
    stages.run_all(pair, end - timedelta(days=1), end)
    for _ in range(args.decisions - 1):
        stages.candles_run(pair, end, end + timedelta(days=1))
        end += timedelta(days=1)
        trained = stages.train(pair, end)
        decision = stages.promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
        stages.deploy(pair, stages.export(pair, decision), decision)
    decided = history.read(pair.stream)
    cpu, wall, logged = [], [], 0
    for i in range(args.candles):
        start = end + i * STEP
        stages.backfill(pair, start, start + STEP, docs=False)
        stages.materialize(pair, start, start + STEP)
        began_cpu, began = time.process_time(), time.perf_counter()
        done = scoring.score(pair, start, start + STEP)
        cpu.append(time.process_time() - began_cpu)
        wall.append(time.perf_counter() - began)
        logged += done.logged + sum(t.logged for t in done.targets)
    others = len(done.targets)
    print(
        f"ETH/BTC 5m, {len(decided)} decisions in the history, {others} other targets, "
        f"{args.candles} live candles"
    )
    print(f"forecasts logged: {logged} (champion and shadow per candle, and each other target)")
    print(
        f"scoring per candle: CPU {statistics.median(cpu):.3f} s median, {max(cpu):.3f} s "
        f"worst; wall {statistics.median(wall):.3f} s median"
    )
    share = statistics.median(cpu) / RUN_CPU_S
    print(f"beside a 5m candles run's {RUN_CPU_S} CPU-s without scoring: +{share:.1%}")


if __name__ == "__main__":
    main()
