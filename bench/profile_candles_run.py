"""Where a 5m candles run's own CPU goes: the work of the sub-hourly candles DAG's one task
(ingest, validate, features, materialize, score: ``stages.candles_run``) profiled in one
process, without Airflow.

    .venv/bin/python bench/profile_candles_run.py [--candles 12] [--top 25]

In a throwaway data directory (SQLite online store), one synthetic 5m stream's history is
loaded (not measured), the task's modules are preloaded as the process that forks tasks does
(:mod:`candlecast.orchestration.preload`), then ``--candles`` consecutive candles run one at a
time, unprofiled (it prints the CPU-seconds per run), then as many more under cProfile (on
process time), whose functions it prints by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candles", type=int, default=12, help="candles run, one at a time")
    parser.add_argument("--top", type=int, default=25, help="functions printed (0: no profile)")
    args = parser.parse_args()
    if args.candles < 1:
        parser.error("--candles: at least 1")
    root = Path(tempfile.mkdtemp(prefix="candlecast-profile-candles-"))
    from candlecast.testing import scaleout

    (root / "pairs.yaml").write_text(scaleout.streams_config(1, 2 * args.candles))
    os.environ.update(CANDLECAST_HOME=str(root / "home"), CANDLECAST_PAIRS=str(root / "pairs.yaml"))
    # nothing listens on this port: the run's announcement to the service fails quietly
    os.environ["CANDLECAST_SERVICE_URL"] = "http://127.0.0.1:9"

    from candlecast.config import load_pairs
    from candlecast.orchestration import preload, stages

    preload.preload(["airflow", "scheduler"])
    pair = load_pairs(root / "pairs.yaml").pairs[0]
    stages.backfill(pair, scaleout.END - scaleout.HISTORY, scaleout.END, docs=False)
    stages.materialize(pair, scaleout.END - timedelta(days=1), scaleout.END)
    stages.score(pair, scaleout.END - timedelta(hours=1), scaleout.END)

    spent = []
    for index in range(args.candles):  # unprofiled: the CPU-seconds per run
        start = scaleout.END + scaleout.CANDLE * index
        began = time.process_time()
        stages.candles_run(pair, start, start + scaleout.CANDLE)
        spent.append(time.process_time() - began)
    steady = spent[1:] or spent
    print(
        f"candles runs: first {spent[0]:.2f} CPU-s, then mean {sum(steady) / len(steady):.2f} "
        f"(min {min(steady):.2f}, max {max(steady):.2f}); load {os.getloadavg()[0]:.1f}"
    )
    if not args.top:
        return
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    for index in range(args.candles, 2 * args.candles):  # profiled: where it goes
        start = scaleout.END + scaleout.CANDLE * index
        profiler.runcall(stages.candles_run, pair, start, start + scaleout.CANDLE)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
