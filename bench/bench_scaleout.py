"""Scale-out measured on the production configuration: Airflow on the CeleryExecutor with
PostgreSQL and Redis (:class:`candlecast.testing.stack.CeleryStack`), N 5m streams' candles
backfills run with one Celery worker, then more.

    flock /tmp/candlecast-integration.lock .venv/bin/python bench/bench_scaleout.py
    ... bench/bench_scaleout.py --streams 8 --candles 6 --workers 1,2

It brings the stack up (fresh PostgreSQL databases, Redis databases 13 and 14 flushed: run it
under the shared lock) with the first worker count, loads every stream's history (not
measured), measures the idle deployment, then for each worker count (ascending; workers are
added to the running stack) backfills the next ``--candles`` candles of every stream at once.
It prints per worker count the DAG runs per minute, CPU-seconds per run, the CPU share of the
scheduler, DAG processor, API server, PostgreSQL (the metadata database's backends), Redis and
the workers (with their task processes), how busy the worker slots were, which worker ran how
many tasks, the load average and where the bottleneck is. On the way out every process is
stopped and checked gone, the databases dropped and the Redis databases flushed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROKER_DB, ONLINE_DB = 13, 14


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=6, help="5m streams (candles DAGs)")
    parser.add_argument("--candles", type=int, default=6, help="candles per stream per phase")
    parser.add_argument("--workers", default="1,2", help="worker counts, ascending")
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle measured")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: comma-separated integers, not {args.workers!r}")
    if workers != sorted(workers) or workers[0] < 1 or args.streams < 1 or args.candles < 1:
        parser.error("--workers must ascend from 1 or more; --streams and --candles at least 1")

    from candlecast.cli.airflow_local import pools
    from candlecast.config import load_pairs
    from candlecast.testing import scaleout
    from candlecast.testing.stack import CeleryStack, running

    root = Path(tempfile.mkdtemp(prefix="candlecast-bench-scaleout-"))
    pairs = root / "pairs.yaml"
    pairs.write_text(scaleout.streams_config(args.streams, args.candles * len(workers)))
    stack = CeleryStack(root, pairs, BROKER_DB, ONLINE_DB, workers=workers[0])
    with running(stack):
        stack.create_pools(pools(load_pairs(pairs)))
        dag_ids = scaleout.synthetic_dag_ids(stack)
        took = scaleout.load_history(stack, dag_ids)
        print(f"history of {len(dag_ids)} streams loaded in {took:.0f} s (not measured)")
        meter = scaleout.CpuMeter(stack)
        with meter:
            stack.client().wait_for_dags(dag_ids)
            before = meter.snapshot()
            time.sleep(args.idle)
            idle = {k: (v - before[k]) / args.idle for k, v in meter.snapshot().items()}
        print(
            f"idle deployment: {sum(idle.values()):.3f} CPU-s/s "
            f"({', '.join(f'{k} {v:.3f}' for k, v in idle.items())})",
            flush=True,
        )
        phases = []
        for phase in scaleout.scale_out(stack, workers, args.candles, args.timeout):
            phases.append(phase)
            print(
                f"{phase.workers} worker(s): {len(phase.runs)} runs in {phase.wall_s:.0f} s",
                flush=True,
            )
        print(scaleout.table(phases, idle))
    left = stack.leftovers()
    if left:
        sys.exit(f"processes outlived the stack: {[p.pid for p in left]}")
    print(f"every process of the stack stopped; logs were in {stack.logs}")


if __name__ == "__main__":
    main()
