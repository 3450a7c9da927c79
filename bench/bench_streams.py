"""Many streams under the real scheduler: what a stream costs per candle, per day, and how many
one machine carries live.

    .venv/bin/python bench/bench_streams.py                       # N = 1, 4 (a few minutes)
    .venv/bin/python bench/bench_streams.py --counts 1,10,50,100,300 --candles 12
    .venv/bin/python bench/bench_streams.py --counts 3 --train 3 --monitor 3
    .venv/bin/python bench/bench_streams.py --counts 50 --timeframes 5m --candles 0 --train 50
    .venv/bin/python bench/bench_streams.py --counts 100,300 --timeframes 5m --live 120

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

``--live M`` runs the streams live instead, under the real scheduler, for M minutes per N: the
bundled file is copied with its times moved so that its replay point is the current candle (its
later candles close in real time), every stream's history is loaded up to now (not measured),
and every candles DAG is unpaused on its own schedule (a run per candle, catch-up off, one run
at a time). After a warm-up (each DAG's first run catches up the candles that closed while the
history loaded), every candle closing in the next M minutes is judged: missed when its stream
has no run for it, the run failed, or it ended after the next candle closed. It prints per N
and timeframe the candles judged and missed (and why), the seconds from a candle's close to its
run's end (p50, p95, max), the whole Airflow tree's CPU as a share of the cores (idle
included), CPU-s per run net of idle and metadata rows per stream-day; it stops growing N at
the first N that misses a candle. A 2-hour run of 300 5m streams:
``--counts 300 --timeframes 5m --live 120``.

``--postgres`` keeps Airflow's metadata in a fresh database of the local PostgreSQL
(``CANDLECAST_AIRFLOW_DATABASE``) instead of the embedded SQLite file, the executor still the
LocalExecutor; Airflow's own sizes come from the environment (``AIRFLOW__CORE__PARALLELISM``,
``AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL``) and are printed.
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


def db_rows(db: Path | str) -> int:
    """Rows of Airflow's run-related tables: ``db`` is the SQLite file, or the name of a
    database in the local PostgreSQL (``--postgres``)."""
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
    if isinstance(db, str):
        from candlecast.testing.services import Services

        found = Services().query(
            db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        names = {r[0] for r in found}
        return sum(
            int(Services().query(db, f"SELECT COUNT(*) FROM {t}")[0][0])
            for t in tables
            if t in names
        )
    with sqlite3.connect(db) as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return sum(
            con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables if t in names
        )


def metadata_database(args: argparse.Namespace, name: str) -> Path | str:
    """Where this N's Airflow keeps its metadata: the embedded SQLite file, or with
    ``--postgres`` a fresh database of that name in the local PostgreSQL (the executor stays
    the LocalExecutor), named by ``CANDLECAST_AIRFLOW_DATABASE``. Call before ``Settings()``."""
    if not args.postgres:
        os.environ.pop("CANDLECAST_AIRFLOW_DATABASE", None)
        return Path(os.environ["CANDLECAST_HOME"]) / "airflow" / "airflow.db"
    from candlecast.testing.services import Services

    services = Services()
    services.check()
    services.query(services.admin_database, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    services.query(services.admin_database, f'CREATE DATABASE "{name}"')
    os.environ["CANDLECAST_AIRFLOW_DATABASE"] = services.postgres_url(name)
    return name


def load_history(config: Path, ends: dict[str, datetime] | None = None) -> None:
    """Every stream's history up to its timeframe's end (``ends``, else the replay point in
    ``SOURCES``) into its stores, and its last day into the online store, as its earlier runs
    would have left them; in a process per core, as Airflow's executor runs streams' tasks."""
    from concurrent.futures import ProcessPoolExecutor

    from candlecast.config import load_pairs

    ends = ends or {
        tf: datetime.fromisoformat(point).replace(tzinfo=UTC)
        for tf, (_, _, point) in SOURCES.items()
    }
    count = len(load_pairs(config).pairs)
    with ProcessPoolExecutor(max_workers=min(count, os.cpu_count() or 1)) as pool:
        list(pool.map(_load_one, [(config, index, ends) for index in range(count)]))


def _load_one(job: tuple[Path, int, dict[str, datetime]]) -> None:
    from candlecast.config import load_pairs
    from candlecast.orchestration import stages

    config, index, ends = job
    pair = load_pairs(config).pairs[index]
    end = ends[pair.timeframe]
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


def _use_home(home: Path, config: Path) -> None:
    """This N's data directory and pair config, for this process and Airflow's."""
    os.environ.update(
        CANDLECAST_HOME=str(home),
        CANDLECAST_PAIRS=str(config),
        BENTOML_HOME=str(home / "bentoml"),
        CANDLECAST_SERVICE_PORT=str(_port()),  # nothing listens: announcements fail quietly
    )


def run_for(count: int, args: argparse.Namespace, root: Path) -> list[Figures]:
    home = root / f"n{count}"
    config = root / f"pairs-{count}.yaml"
    timeframes = args.timeframes.split(",")
    write_config(config, dict.fromkeys(timeframes, count), args.candles)
    _use_home(home, config)
    from candlecast.cli.airflow_local import EmbeddedAirflow, all_dag_ids, running
    from candlecast.config import load_pairs
    from candlecast.names import TRAINING_POOL
    from candlecast.settings import Settings
    from candlecast.timeframes import timeframe_delta

    db = metadata_database(args, f"bench_streams_{'live' if args.live else 'n'}{count}")
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
        client.wait_for_dags(all_dag_ids(load_pairs(config)))
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


@dataclass
class Live:
    """One timeframe's streams run live: each candle's run judged against the next close."""

    timeframe: str
    streams: int
    minutes: float
    candles: int  # (stream, candle) pairs judged
    missed: dict[str, int]  # why -> how many: no run, failed, late
    latencies: list[float]  # seconds from the candle's close to its run's end, runs that ended
    cores_share: float  # the whole Airflow tree's CPU over the window, idle included
    roles: dict[str, float]  # each component's share of the cores over the window
    cpu_per_run: float  # idle subtracted
    rows_per_run: float

    @property
    def missed_total(self) -> int:
        return sum(self.missed.values())


def shifted_file(timeframe: str, root: Path, now: datetime) -> tuple[Path, datetime]:
    """A copy of the timeframe's bundled file with its times moved so that its replay point
    (``SOURCES``) is ``now``'s candle: the candles after it close in real time from now on.
    Returns the copy and the shift's replay point (the last whole candle's close)."""
    import pandas as pd

    from candlecast.timeframes import timeframe_delta

    _, source, point = SOURCES[timeframe]
    step = timeframe_delta(timeframe)
    present = datetime.fromtimestamp(
        now.timestamp() // step.total_seconds() * step.total_seconds(), UTC
    )
    shift = present - datetime.fromisoformat(point).replace(tzinfo=UTC)
    if source.suffix != ".feather":
        raise SystemExit(f"--live replays freqtrade's feather files only, not {source.name}")
    frame = pd.read_feather(source)
    frame["date"] = frame["date"] + pd.Timedelta(shift)
    copy = root / f"live-{timeframe}-{source.name}"
    frame.to_feather(copy)
    return copy, present


def write_live_config(
    path: Path, counts: dict[str, int], files: dict[str, Path], now: datetime
) -> None:
    """N streams per timeframe on the shifted copies, each on its own schedule (a run per
    candle, catch-up off), from a start that holds the training window and the warm-up."""
    lines = [
        "defaults:\n",
        "  training: {kinds: [lightgbm], schedule: null, on_new_features: false}\n",
        "pairs:\n",
    ]
    for timeframe, count in counts.items():
        symbol = SOURCES[timeframe][0]
        start = (now - timedelta(days=TRAIN_DAYS[timeframe] + 3)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        for index in range(count):
            lines.append(
                f"  - {{symbol: {symbol}, exchange: {exchange(index)}, timeframe: {timeframe}, "
                f"replay_file: {files[timeframe]}, start: {start:%Y-%m-%dT%H:%M}:00Z, "
                f"training: {{train_days: {TRAIN_DAYS[timeframe]}}}}}\n"
            )
    path.write_text("".join(lines))


def _scheduled_runs(client, since: datetime) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Every scheduled run due at or after ``since`` (all DAGs), page by page."""
    from candlecast.cli.airflow_api import PAGE

    runs: list[dict[str, Any]] = []
    while True:
        body = client.request(
            "GET",
            "/api/v2/dags/~/dagRuns",
            limit=PAGE,
            offset=len(runs),
            run_type=["scheduled"],
            run_after_gte=since.isoformat(),
            order_by="run_after",
        )
        runs += body["dag_runs"]
        if not body["dag_runs"] or len(runs) >= body["total_entries"]:
            return runs


def _settled(client, since: datetime) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(runs ended, runs still queued or running) among the scheduled runs since ``since``."""
    runs = _scheduled_runs(client, since)
    open_ = sum(r["state"] in ("queued", "running") for r in runs)
    return len(runs) - open_, open_


def _sleep_until(moment: datetime) -> None:
    while (left := (moment - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 30))


def run_live(count: int, args: argparse.Namespace, root: Path) -> list[Live]:
    """N streams per timeframe run live for ``--live`` minutes (see the module's docstring)."""
    home = root / f"live{count}"
    config = root / f"pairs-live-{count}.yaml"
    timeframes = args.timeframes.split(",")
    now = datetime.now(UTC)
    shifted = {tf: shifted_file(tf, root, now) for tf in timeframes}
    write_live_config(
        config, dict.fromkeys(timeframes, count), {k: v[0] for k, v in shifted.items()}, now
    )
    _use_home(home, config)
    from candlecast.cli.airflow_local import EmbeddedAirflow, all_dag_ids, running
    from candlecast.config import load_pairs
    from candlecast.settings import Settings
    from candlecast.timeframes import timeframe_delta

    db = metadata_database(args, f"bench_streams_{'live' if args.live else 'n'}{count}")
    settings = Settings()
    pairs = load_pairs(config).pairs
    started = time.perf_counter()
    # up to the candle that closed when the bench began
    load_history(config, {tf: point for tf, (_, point) in shifted.items()})
    print(
        f"N={count} live: history of {len(pairs)} streams loaded in "
        f"{time.perf_counter() - started:.0f} s (not measured; the first live runs catch up "
        "the candles that closed meanwhile)",
        flush=True,
    )
    airflow = EmbeddedAirflow.from_settings(settings, "127.0.0.1", _port())
    results = []
    with running(airflow, load_pairs(config)):
        client = airflow.client()
        client.wait_for_dags(all_dag_ids(load_pairs(config)))
        before, t0 = tree_cpu(airflow.procs), time.perf_counter()
        time.sleep(args.idle)
        after, idle_wall = tree_cpu(airflow.procs), time.perf_counter() - t0
        idle_rate = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / idle_wall for k in after}
        from candlecast.cli.embedded import airflow_env

        chosen = airflow_env(settings)
        print(
            f"N={count} live: idle Airflow {sum(idle_rate.values()):.3f} CPU-s/s; LocalExecutor "
            f"parallelism {chosen['AIRFLOW__CORE__PARALLELISM']}, DAG file parsed every "
            f"{chosen['AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL']} s, metadata in "
            f"{chosen['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].split(':')[0]}",
            flush=True,
        )
        unpaused = datetime.now(UTC)
        for pair in pairs:
            client.unpause(pair.stream.candles_dag_id)
        # warm-up (not judged): each DAG's first run catches up the candles that closed since
        # the history was loaded; the window opens at the first candle close after it settles
        step = min(timeframe_delta(tf) for tf in timeframes)
        # the warm-up ends when as many runs ended as there are streams and none is open, or
        # after three candles of the shortest timeframe: a deployment that cannot keep up
        # never settles, and the window judges that
        deadline = time.perf_counter() + 3 * step.total_seconds()
        while True:
            ended, open_ = _settled(client, unpaused - step)
            if ended >= len(pairs) and not open_:
                break
            if time.perf_counter() > deadline:
                print(f"N={count} live: not settled ({ended} runs ended, {open_} open)")
                break
            time.sleep(10)
        now = datetime.now(UTC)
        opens = datetime.fromtimestamp(
            (now.timestamp() // step.total_seconds() + 1) * step.total_seconds(), UTC
        )
        closes = opens + timedelta(minutes=args.live)
        print(
            f"N={count} live: warmed up; judging the candles closing after {opens:%H:%M:%S} "
            f"until {closes:%H:%M:%S} UTC",
            flush=True,
        )
        _sleep_until(opens)
        cpu_before, rows_before, t_open = tree_cpu(airflow.procs), db_rows(db), time.perf_counter()
        longest = max(timeframe_delta(tf) for tf in timeframes)
        # interim judgments (the candles whose next close has passed), so a long run reports
        # as it goes; each costs a few API calls
        mark = opens + timedelta(minutes=args.report)
        while mark + longest < closes:
            _sleep_until(mark + longest + timedelta(seconds=5))
            interim = _judge(client, pairs, timeframes, opens, mark)
            cpu_now, elapsed = tree_cpu(airflow.procs), time.perf_counter() - t_open
            used = (sum(cpu_now.values()) - sum(cpu_before.values())) / elapsed
            print(
                f"  after {(mark - opens).total_seconds() / 60:.0f} min: "
                + "; ".join(
                    f"{tf} {len(lat)} of {judged} ended, {sum(missed.values())} missed "
                    f"{dict(missed) or ''}, p95 {_p95(lat):.1f} s"
                    for tf, (judged, missed, lat) in interim.items()
                )
                + f"; Airflow {used / (os.cpu_count() or 1):.0%} of the cores; "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            mark += timedelta(minutes=args.report)
        _sleep_until(closes)
        cpu_after, rows_after, window = (
            tree_cpu(airflow.procs),
            db_rows(db),
            time.perf_counter() - t_open,
        )
        print(f"  (load average {os.getloadavg()[0]:.2f} at the window's end)", flush=True)
        # the last candles' runs get until the next close to end (later ones count as late)
        _sleep_until(closes + longest + timedelta(seconds=5))
        judged_all = _judge(client, pairs, timeframes, opens, closes)
        spent = sum(cpu_after.values()) - sum(cpu_before.values())
        by_role = {
            k: (cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0)) / (window * (os.cpu_count() or 1))
            for k in cpu_after
        }
        net = max(0.0, spent - sum(idle_rate.values()) * window)
        cores = os.cpu_count() or 1
        total = sum(judged for judged, _, _ in judged_all.values()) or 1
        for timeframe, (judged, missed, latencies) in judged_all.items():
            share = judged / total  # the window's CPU and rows split by candles judged
            results.append(
                Live(
                    timeframe,
                    sum(p.timeframe == timeframe for p in pairs),
                    window / 60,
                    judged,
                    missed,
                    latencies,
                    spent * share / (window * cores),
                    by_role,
                    net * share / max(1, judged),
                    (rows_after - rows_before) * share / max(1, judged),
                )
            )
    return results


def _p95(values: list[float]) -> float:
    import numpy as np

    return float(np.percentile(values, 95)) if values else float("nan")


def _judge(client, pairs, timeframes, opens, upto):  # type: ignore[no-untyped-def]
    """Per timeframe: (candles judged, missed by why, seconds from close to run's end) for
    every stream's candles closing in ``(opens, upto]``."""
    from candlecast.timeframes import timeframe_delta

    runs = _scheduled_runs(client, opens + timedelta(seconds=1))
    by_key = {
        (r["dag_id"], datetime.fromisoformat(r["data_interval_end"])): r
        for r in runs
        if r.get("data_interval_end")
    }
    out = {}
    for timeframe in timeframes:
        delta = timeframe_delta(timeframe)
        first = (opens.timestamp() // delta.total_seconds() + 1) * delta.total_seconds()
        dues = [
            datetime.fromtimestamp(first, UTC) + delta * k
            for k in range(int((upto.timestamp() - first) // delta.total_seconds()) + 1)
        ]
        missed: dict[str, int] = {}
        latencies = []
        group = [p for p in pairs if p.timeframe == timeframe]
        for pair in group:
            for due in dues:
                run = by_key.get((pair.stream.candles_dag_id, due))
                ended = run and run.get("end_date") and datetime.fromisoformat(run["end_date"])
                if ended:
                    latencies.append((ended - due).total_seconds())
                if run is None:
                    why = "no run"
                elif run["state"] == "failed":
                    why = "failed"
                elif not ended:
                    why = "not ended"
                elif ended > due + delta:
                    why = "late"
                else:
                    continue
                missed[why] = missed.get(why, 0) + 1
        out[timeframe] = (len(group) * len(dues), missed, latencies)
    return out


def print_live(results: list[Live]) -> None:
    import numpy as np

    print(
        "\n| N | timeframe | minutes | candles judged | missed | close to run's end s "
        "(p50 / p95 / max) | Airflow CPU, share of cores (scheduler, DAG processor, API "
        "server, tasks) | CPU-s/run net of idle | "
        "DB rows/stream-day |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lat = np.array(r.latencies) if r.latencies else np.array([float("nan")])
        why = ", ".join(f"{v} {k}" for k, v in sorted(r.missed.items()))
        roles = ", ".join(
            f"{r.roles.get(k, 0.0):.0%}"
            for k in ("scheduler", "dag-processor", "api-server", "tasks")
        )
        period = 86_400 / (Figures(r.timeframe, 0, 0, 0, 0, 0, {}, 0, 0).period_s)
        print(
            f"| {r.streams} | {r.timeframe} | {r.minutes:.0f} | {r.candles} | "
            f"{r.missed_total}{f' ({why})' if why else ''} | {np.median(lat):.1f} / "
            f"{np.percentile(lat, 95):.1f} / {lat.max():.1f} | {r.cores_share:.0%} ({roles}) | "
            f"{r.cpu_per_run:.2f} | {r.rows_per_run * period:,.0f} |",
            flush=True,
        )


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
    parser.add_argument(
        "--live",
        type=float,
        default=0,
        help="minutes of live running judged per N (0: replay backfills instead)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="Airflow's metadata in a fresh database of the local PostgreSQL, not SQLite",
    )
    parser.add_argument(
        "--report", type=float, default=30, help="minutes between interim judgments (live)"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="candlecast-bench-streams-"))
    sys.path.insert(0, str(REPO))
    if args.live:
        judged: list[Live] = []
        for count in sorted(int(c) for c in args.counts.split(",")):
            results = run_live(count, args, root)
            judged += results
            print_live(judged)
            if any(r.missed_total for r in results):
                print(f"N={count} missed candles: not growing N further")
                break
        return
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
