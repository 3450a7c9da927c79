"""Many streams under the real scheduler: what a stream costs per candle, per day, and how many
one machine carries live.

    .venv/bin/python bench/bench_streams.py                       # N = 1, 4 (a few minutes)
    .venv/bin/python bench/bench_streams.py --counts 1,10,50,100,300 --candles 12
    .venv/bin/python bench/bench_streams.py --counts 3 --train 3 --monitor 3
    .venv/bin/python bench/bench_streams.py --counts 50 --timeframes 5m --candles 0 --train 50

For each N (ascending), in a throwaway data directory: N streams per timeframe built from the
bundled files under distinct synthetic exchange ids (``synth0000`` ...; 5m: freqtrade's
ETH/BTC, 1h: the BTC/USD hourly file, 1m: freqtrade's UNITTEST/BTC), their history loaded first
(not measured), then the embedded Airflow (``candlecast airflow``: LocalExecutor, SQLite) is
started, its idle CPU measured, and a backfill of ``--candles`` candles per stream replayed
through every stream's candles DAG at once. CPU comes from the whole Airflow process tree
(psutil: every live process's own time plus the reaped children's, so short task processes
count), idle subtracted; wall seconds per run from Airflow's own run timestamps.

It prints, per timeframe and N: CPU-seconds and wall seconds per candles run, the scheduler's,
DAG processor's, API server's and the task side's (executor workers, supervisors and task
processes) share of the CPU, metadata DB rows per stream-day, and whether the replay kept up (a
candle of every stream processed, by CPU on 2 cores at 70%, before the next closes); it stops
growing N at the first N that falls behind. ``--train K`` and ``--monitor K`` also trigger K
streams' train and monitor DAGs and print CPU and wall seconds per run (and, for train, the
wall time and peak memory of the K trainings together, and the training pool's size);
``--candles 0`` replays nothing (only the triggered runs). Last, a cost model fitted over the
measured N: CPU-seconds per stream-day per timeframe, and the streams that fit on this
machine's cores at 70%.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "bundled"
#: Per timeframe: (symbol, file, end of the replayed candles); every stream's DAG starts a
#: few days earlier, so its history and warm-up are inside the file.
SOURCES = {
    "1m": ("UNITTEST/BTC", BUNDLED / "freqtrade" / "UNITTEST_BTC-1m.feather", "2017-11-14T12:00"),
    "5m": ("ETH/BTC", BUNDLED / "freqtrade" / "ETH_BTC-5m.feather", "2018-01-29T00:00"),
    "1h": ("BTC/USD", BUNDLED / "BTC_USD-Hourly.csv", "2022-02-27T00:00"),
}
TRAIN_DAYS = {"1m": 2, "5m": 6, "1h": 30}
BUSY_SHARE = 0.7


@dataclass
class Figures:
    timeframe: str
    streams: int
    runs: int
    cpu_per_run: float
    wall_per_run: float
    replay_wall: float
    shares: dict[str, float]
    rows_per_run: float
    idle_cpu_s: float  # the idle Airflow's CPU-s per second with this many DAGs loaded

    @property
    def period_s(self) -> float:
        from candlecast.timeframes import timeframe_ms

        return timeframe_ms(self.timeframe) / 1000

    @property
    def candles_per_day(self) -> float:
        return 86_400 / self.period_s

    @property
    def keeps_up(self) -> bool:
        """Every stream's candle processed before the next closes: by CPU at 70% of the cores,
        and by the replay's own pace (all streams' ``runs / streams`` candles in its wall)."""
        cores = os.cpu_count() or 1
        cpu_ok = self.cpu_per_run * self.streams <= BUSY_SHARE * cores * self.period_s
        pace_ok = self.replay_wall / (self.runs / self.streams) <= self.period_s
        return cpu_ok and pace_ok


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exchange(index: int) -> str:
    return f"synth{index:04d}"


def write_config(path: Path, counts: dict[str, int], candles: int) -> None:
    """N streams per timeframe; each DAG ends after the replayed candles (no scheduled runs of
    its own: only the backfills run)."""
    from candlecast.timeframes import timeframe_delta

    lines = [
        "defaults:\n",
        "  training: {kinds: [lightgbm], schedule: null, on_new_features: false}\n",
    ]
    lines.append("pairs:\n")
    for timeframe, count in counts.items():
        symbol, source, end = SOURCES[timeframe]
        start = datetime.fromisoformat(end) - timedelta(days=TRAIN_DAYS[timeframe] + 3)
        stop = datetime.fromisoformat(end) + timeframe_delta(timeframe) * candles
        for index in range(count):
            lines.append(
                f"  - {{symbol: {symbol}, exchange: {exchange(index)}, timeframe: {timeframe}, "
                f"replay_file: {source}, start: {start:%Y-%m-%dT%H:%M}:00Z, "
                f"end: {stop:%Y-%m-%dT%H:%M}:00Z, "
                f"training: {{train_days: {TRAIN_DAYS[timeframe]}}}}}\n"
            )
    path.write_text("".join(lines))


def tree_cpu(components: dict[str, Any]) -> dict[str, float]:
    """CPU-seconds of each Airflow component's process tree (every live process's own time
    plus its reaped children's), by role: the scheduler's own process is ``scheduler``, its
    descendants (LocalExecutor workers, task supervisors, task processes) are ``tasks``."""
    import psutil

    roles: dict[str, float] = {}
    for component, popen in components.items():
        try:
            root = psutil.Process(popen.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in members:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            role = "tasks" if component == "scheduler" and proc.pid != popen.pid else component
            spent = times.user + times.system + times.children_user + times.children_system
            if proc.pid == popen.pid and component == "scheduler":
                spent = times.user + times.system  # its reaped workers' time is the tasks'
                roles["tasks"] = (
                    roles.get("tasks", 0.0) + times.children_user + times.children_system
                )
            roles[role] = roles.get(role, 0.0) + spent
    return roles


def db_rows(db: Path) -> int:
    tables = (
        "dag_run",
        "task_instance",
        "task_instance_history",
        "xcom",
        "log",
        "job",
        "asset_event",
        "dag_run_note",
        "task_reschedule",
        "rendered_task_instance_fields",
        "asset_dag_run_queue",
        "dagrun_asset_event",
        "backfill_dag_run",
        "deadline",
    )
    with sqlite3.connect(db) as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return sum(
            con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables if t in names
        )


def load_history(config: Path) -> None:
    from candlecast.config import load_pairs
    from candlecast.orchestration import stages

    for pair in load_pairs(config).pairs:
        end = datetime.fromisoformat(SOURCES[pair.timeframe][2]).replace(tzinfo=UTC)
        stages.backfill(pair, pair.start, end, docs=False)  # type: ignore[arg-type]
        stages.materialize(pair, end - timedelta(days=1), end)


def measure(client, airflow, dag_ids, start, end, idle_rate, db, timeout):  # type: ignore[no-untyped-def]
    """Replay ``[start, end)`` through every DAG at once; CPU by role (idle subtracted), wall
    per run and metadata rows per run. The client's wait (``wait_for_backfill``, which repairs
    a backfill whose creation failed part-way) polls one backfill at a time, two requests per
    3 s, so the bench's own polling costs the API server little."""
    rows_before, cpu_before = db_rows(db), tree_cpu(airflow.procs)
    created_before = _backfill_runs(client)
    started = time.perf_counter()
    backfills = [client.create_backfill(dag_id, start, end) for dag_id in dag_ids]
    created = _backfill_runs(client) - created_before
    # SQLite may refuse part of a backfill (a 500 while the scheduler writes, after some of its
    # runs were committed): the client's wait creates the missing runs, as for any user
    for backfill in backfills:
        client.wait_for_backfill(backfill, max(1.0, timeout - (time.perf_counter() - started)))
    wall = time.perf_counter() - started
    asked, made = len(dag_ids) * _candles(start, end, dag_ids), _backfill_runs(client)
    if created < asked:
        print(
            f"  Airflow created {created} of {asked} backfill runs at first (SQLite refused the "
            f"rest part-way); the waits created {made - created_before - created} more",
            flush=True,
        )
    cpu_after = tree_cpu(airflow.procs)
    spent = {k: cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0) for k in cpu_after}
    spent = {k: max(0.0, v - idle_rate.get(k, 0.0) * wall) for k, v in spent.items()}
    runs = []
    for dag_id in dag_ids:
        body = client.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", limit=1000)
        runs += [r for r in body["dag_runs"] if r.get("run_type") == "backfill"]
    walls = [
        (datetime.fromisoformat(r["end_date"]) - datetime.fromisoformat(r["start_date"]))
        for r in runs
        if r.get("end_date") and r.get("start_date")
    ]
    failed = [r["dag_run_id"] for r in runs if r["state"] != "success"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs did not succeed, e.g. {failed[0]}")
    per_run = sum(w.total_seconds() for w in walls) / max(1, len(walls))
    return runs, wall, spent, per_run, db_rows(db) - rows_before


def _backfill_runs(client) -> int:  # type: ignore[no-untyped-def]
    """How many backfill runs (any state) every DAG has."""
    body = client.request("GET", "/api/v2/dags/~/dagRuns", limit=1, run_type=["backfill"])
    return int(body["total_entries"])


def _candles(start: datetime, end: datetime, dag_ids: list[str]) -> int:
    from candlecast.timeframes import timeframe_delta

    timeframe = dag_ids[0].rsplit("_", 1)[1]
    return round((end - start) / timeframe_delta(timeframe))


def run_for(count: int, args: argparse.Namespace, root: Path) -> list[Figures]:
    home = root / f"n{count}"
    config = root / f"pairs-{count}.yaml"
    timeframes = args.timeframes.split(",")
    write_config(config, dict.fromkeys(timeframes, count), args.candles)
    os.environ.update(
        CANDLECAST_HOME=str(home),
        CANDLECAST_PAIRS=str(config),
        BENTOML_HOME=str(home / "bentoml"),
        CANDLECAST_SERVICE_PORT=str(_port()),  # nothing listens: announcements fail quietly
    )
    from candlecast.cli.airflow_local import EmbeddedAirflow, running
    from candlecast.config import load_pairs
    from candlecast.names import TRAINING_POOL
    from candlecast.settings import Settings
    from candlecast.timeframes import timeframe_delta

    settings = Settings()
    started = time.perf_counter()
    load_history(config)
    print(
        f"N={count}: history of {count * len(timeframes)} streams loaded in "
        f"{time.perf_counter() - started:.0f} s (not measured)",
        flush=True,
    )
    pairs = load_pairs(config).pairs
    airflow = EmbeddedAirflow.from_settings(settings, "127.0.0.1", _port())
    figures = []
    with running(airflow, load_pairs(config)):
        client = airflow.client()
        client.wait_for_dags(
            [dag for p in pairs for dag in (*p.stream.dag_ids, p.stream.monitor_dag_id)]
        )
        for pair in pairs:
            client.unpause(pair.stream.candles_dag_id)
        time.sleep(5)
        before, t0 = tree_cpu(airflow.procs), time.perf_counter()
        time.sleep(args.idle)
        after, idle_wall = tree_cpu(airflow.procs), time.perf_counter() - t0
        idle_rate = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / idle_wall for k in after}
        print(
            f"N={count}: idle Airflow {sum(idle_rate.values()):.3f} CPU-s/s "
            f"({', '.join(f'{k} {v:.3f}' for k, v in sorted(idle_rate.items()))})",
            flush=True,
        )
        db = settings.paths.airflow / "airflow.db"
        for timeframe in timeframes if args.candles else ():
            group = [p for p in pairs if p.timeframe == timeframe]
            end = datetime.fromisoformat(SOURCES[timeframe][2]).replace(tzinfo=UTC)
            stop = end + timeframe_delta(timeframe) * args.candles
            runs, wall, spent, wall_per_run, rows = measure(
                client,
                airflow,
                [p.stream.candles_dag_id for p in group],
                end,
                stop,
                idle_rate,
                db,
                args.timeout,
            )
            total = sum(spent.values())
            figures.append(
                Figures(
                    timeframe,
                    len(group),
                    len(runs),
                    total / len(runs),
                    wall_per_run,
                    wall,
                    {k: v / total for k, v in spent.items()} if total else {},
                    rows / len(runs),
                    sum(idle_rate.values()),
                )
            )
        for kind, dag_of, how_many in (
            ("train", "train_dag_id", args.train),
            ("monitor", "monitor_dag_id", args.monitor),
        ):
            if how_many:
                _triggered(
                    client,
                    airflow,
                    [getattr(p.stream, dag_of) for p in pairs[:how_many]],
                    kind,
                    idle_rate,
                    args.timeout,
                )
                if kind == "train":
                    print(
                        f"train: pool {TRAINING_POOL} of {settings.training_pool_slots} slots, "
                        f"{settings.fit_threads} fit thread(s) each, on {os.cpu_count()} cores"
                    )
    return figures


def _triggered(client, airflow, dag_ids, kind, idle_rate, timeout) -> None:  # type: ignore[no-untyped-def]
    import psutil

    for dag_id in dag_ids:
        client.unpause(dag_id)
    before, started, peak = tree_cpu(airflow.procs), time.perf_counter(), 0
    runs = [client.trigger(dag_id) for dag_id in dag_ids]
    done = []
    for run in runs:
        while True:
            current = client.dag_run(run.dag_id, run.run_id)
            members = psutil.Process(os.getpid()).children(recursive=True)
            peak = max(peak, sum(_rss(p) for p in members))
            if current.state in ("success", "failed"):
                done.append(current)
                break
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{run.dag_id} still {current.state}")
            time.sleep(2)
    wall = time.perf_counter() - started
    after = tree_cpu(airflow.procs)
    cpu = sum(
        max(0.0, after.get(k, 0.0) - before.get(k, 0.0) - idle_rate.get(k, 0.0) * wall)
        for k in after
    )
    states = sorted({r.state for r in done})
    print(
        f"{kind}: {len(runs)} runs ({', '.join(states)}) in {wall:.0f} s wall together; "
        f"{cpu / len(runs):.1f} CPU-s per run; peak memory of the Airflow tree "
        f"{peak / 2**30:.2f} GiB"
    )


def _rss(proc) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(proc.memory_info().rss)
    except Exception:
        return 0


def cost_model(figures: list[Figures]) -> None:
    """CPU-s per second = idle(S) + sum over timeframes of N_tf x c_tf / period_tf, with c_tf
    the measured CPU-s per candles run (all measured N pooled: it does not grow with N) and
    idle(S) = i0 + i1 x S the idle Airflow (scheduler, DAG processor, triggerer) with S streams'
    DAGs loaded, fitted over the measured N."""
    import numpy as np

    cores = os.cpu_count() or 1
    per_run = {
        tf: sum(f.cpu_per_run * f.runs for f in rows) / sum(f.runs for f in rows)
        for tf in sorted({f.timeframe for f in figures})
        for rows in [[f for f in figures if f.timeframe == tf]]
    }
    timeframes = len(per_run)
    points = {f.streams * timeframes: f.idle_cpu_s for f in figures}
    if len(points) > 1:
        slope, base = np.polyfit(list(points), list(points.values()), 1)
    else:
        base, slope = next(iter(points.values())), 0.0
    print(
        f"\ncost model: idle Airflow {base:.3f} + {slope:.4f} x streams CPU-s/s (fitted on "
        f"{len(points)} N); per candles run (pooled over N):"
    )
    for tf, cost in per_run.items():
        period = next(f for f in figures if f.timeframe == tf).period_s
        per_day = cost * 86_400 / period
        live = (BUSY_SHARE * cores - base) / (slope + cost / period)
        print(
            f"  {tf}: {cost:.2f} CPU-s per run, {per_day:,.0f} CPU-s per stream-day; "
            f"{int(live)} live {tf} streams alone fit {cores} cores at {BUSY_SHARE:.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,4", help="stream counts N per timeframe, ascending")
    parser.add_argument("--timeframes", default="5m,1h", help="of 1m, 5m, 1h")
    parser.add_argument(
        "--candles", type=int, default=6, help="candles replayed per stream (0: none)"
    )
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle measured")
    parser.add_argument("--train", type=int, default=0, help="train runs triggered (streams)")
    parser.add_argument("--monitor", type=int, default=0, help="monitor runs triggered")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="candlecast-bench-streams-"))
    sys.path.insert(0, str(REPO))
    measured: list[Figures] = []
    print(
        "| N | timeframe | runs | CPU-s/run | wall s/run | replay wall s | scheduler | "
        "dag-processor | api-server | tasks | DB rows/stream-day | keeps up | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for count in sorted(int(c) for c in args.counts.split(",")):
        figures = run_for(count, args, root)
        measured += figures
        load = os.getloadavg()
        for f in figures:
            share = {
                k: f"{f.shares.get(k, 0.0):.0%}"
                for k in ("scheduler", "dag-processor", "api-server", "tasks")
            }
            rows = f.rows_per_run * f.candles_per_day
            print(
                f"| {f.streams} | {f.timeframe} | {f.runs} | {f.cpu_per_run:.2f} | "
                f"{f.wall_per_run:.1f} | {f.replay_wall:.0f} | {share['scheduler']} | "
                f"{share['dag-processor']} | {share['api-server']} | {share['tasks']} | "
                f"{rows:,.0f} | {'yes' if f.keeps_up else 'NO'} | {load[0]:.2f} |",
                flush=True,
            )
        if not all(f.keeps_up for f in figures):
            print(f"N={count} falls behind: not growing N further")
            break
    if measured:
        cost_model(measured)


if __name__ == "__main__":
    main()
