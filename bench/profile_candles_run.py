"""Where a 5m candles run's own CPU goes: the work of the sub-hourly candles DAG's one task
(ingest, validate, features, materialize, score: ``stages.candles_run``) profiled in one
process, without Airflow.

    .venv/bin/python bench/profile_candles_run.py [--candles 12] [--top 25] [--forked]

In a throwaway data directory (SQLite online store), one synthetic 5m stream's history is
loaded (not measured), the task's modules are preloaded as the process that forks tasks does
(:mod:`candlecast.orchestration.preload`), then ``--candles`` consecutive candles run one at a
time, unprofiled (it prints the CPU-seconds per run), then as many more under cProfile (on
process time), whose functions it prints by cumulative time.

``--forked`` runs each candle as Airflow's task process does instead: in a bare fork of the
preloaded process, which first parses the DAG file for its own DAG (the parsing context), so
what every task imports or sets up again is counted; it prints the CPU-seconds per run (the
child's, from the fork to the end of the run) and profiles nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import runpy
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candles", type=int, default=12, help="candles run, one at a time")
    parser.add_argument("--top", type=int, default=25, help="functions printed (0: no profile)")
    parser.add_argument(
        "--forked", action="store_true", help="each run in a fork, as a task (no profile)"
    )
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

    if args.forked:  # as the scheduler: the LocalExecutor's workers fork from it
        import airflow.executors.local_executor
        import airflow.jobs.scheduler_job_runner  # noqa: F401

    preload.preload(["airflow", "scheduler"])
    pair = load_pairs(root / "pairs.yaml").pairs[0]

    def history() -> float:
        stages.backfill(pair, scaleout.END - scaleout.HISTORY, scaleout.END, docs=False)
        stages.materialize(pair, scaleout.END - timedelta(days=1), scaleout.END)
        stages.score(pair, scaleout.END - timedelta(hours=1), scaleout.END)
        return 0.0

    def run(index: int) -> float:
        start = scaleout.END + scaleout.CANDLE * index
        began = time.process_time()
        if args.forked:  # the task process parses the DAG file for its own DAG first
            os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = pair.stream.candles_dag_id
            runpy.run_path(str(Path(__file__).parents[1] / "dags" / "candlecast_pipelines.py"))
        stages.candles_run(pair, start, start + scaleout.CANDLE)
        return time.process_time() - began

    # forked: nothing the parent opened (file locks, stores) is inherited, as in Airflow
    step = _in_a_fork if args.forked else (lambda work: work())
    step(history)
    spent = [step(partial(run, index)) for index in range(args.candles)]  # unprofiled
    steady = spent[1:] or spent
    print(
        f"candles runs{' (forked)' if args.forked else ''}: first {spent[0]:.2f} CPU-s, then "
        f"mean {sum(steady) / len(steady):.2f}, median {statistics.median(steady):.2f} "
        f"(min {min(steady):.2f}, max {max(steady):.2f}); load {os.getloadavg()[0]:.1f}"
    )
    if not args.top or args.forked:
        return
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    for index in range(args.candles, 2 * args.candles):  # profiled: where it goes
        start = scaleout.END + scaleout.CANDLE * index
        profiler.runcall(stages.candles_run, pair, start, start + scaleout.CANDLE)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(args.top)
    print(out.getvalue())


def _in_a_fork(work: Callable[[], float]) -> float:
    """``work()`` in a bare fork of this process (a task process); what it returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 1
        try:
            os.write(write, repr(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    _, status = os.waitpid(pid, 0)
    if status or not text:
        raise SystemExit(f"a forked run failed (wait status {status})")
    return float(text)


if __name__ == "__main__":
    main()
