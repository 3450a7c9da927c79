"""Scale-out on the Celery stack, measured: N 5m streams' candles backfills run with one
worker, then again (the next candles) after more workers join, and where the CPU goes.

Each phase creates a backfill of ``candles`` candles for every stream's candles DAG at once
through the REST API (one run at a time per DAG, N DAGs in parallel) and waits for all of them.
It records the DAG runs per minute (from the backfills' creation to the last task's end, by
Airflow's own timestamps), which worker ran each task, how busy the workers' slots were (the
tasks' own durations over the phase's wall time) and the CPU-seconds of every part of the
deployment over the phase: the scheduler, DAG processor and API server (each with its process
tree), the Celery workers (with their task supervisors and task processes), PostgreSQL (the
backends of the stack's metadata database, sampled every second, so backends that came and
went count) and the Redis server (the whole server: hold the shared lock, so nothing else uses
it). Used by ``bench/bench_scaleout.py`` and the Celery stack test's set-up.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from candlecast.cli.airflow_api import DagRun
from candlecast.settings import REPO_ROOT
from candlecast.testing.stack import CeleryStack

#: The streams' candles: freqtrade's ETH/BTC 5m file, replayed from ``END`` on; each stream's
#: history (training window and feature warm-up) lies before it.
SYMBOL = "ETH/BTC"
SOURCE = REPO_ROOT / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather"
END = datetime(2018, 1, 29, tzinfo=UTC)
CANDLE = timedelta(minutes=5)
HISTORY = timedelta(days=9)
#: Worker slots busier than this (tasks' durations over wall) mean the workers are the limit.
BUSY_SLOTS = 0.8
ROLES = ("scheduler", "dag-processor", "api-server", "postgres", "redis", "workers")


def exchange(index: int) -> str:
    return f"synth{index:04d}"


def stream_pairs(count: int, candles: int) -> str:
    """YAML list items (under ``pairs:``) of ``count`` 5m streams on synthetic exchanges, each
    replaying ``candles`` candles after ``END`` on its own schedule, trained only when asked."""
    start, stop = END - HISTORY, END + CANDLE * candles
    return "".join(
        f"  - {{symbol: {SYMBOL}, exchange: {exchange(index)}, timeframe: 5m, "
        f'replay_file: {SOURCE}, schedule: "*/5 * * * *", '
        f"start: {start:%Y-%m-%dT%H:%M}:00Z, end: {stop:%Y-%m-%dT%H:%M}:00Z, "
        "training: {train_days: 6, schedule: null, on_new_features: false}}\n"
        for index in range(count)
    )


def streams_config(count: int, candles: int) -> str:
    """A pair config of ``count`` such streams alone."""
    return "pairs:\n" + stream_pairs(count, candles)


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_history(stack: CeleryStack, dag_ids: list[str]) -> float:
    """Each synthetic stream's candles up to ``END`` into the stack's stores, and its last day
    of features into the online store (as its earlier runs would have); seconds taken."""
    from candlecast.config import load_pairs
    from candlecast.orchestration import stages

    began = time.monotonic()
    ours = {k: v for k, v in stack.candlecast_env().items() if k.startswith("CANDLECAST")}
    with _environment(ours):
        for pair in load_pairs(stack.pairs).pairs:
            if pair.stream.candles_dag_id in dag_ids:
                stages.backfill(pair, END - HISTORY, END, docs=False)
                stages.materialize(pair, END - timedelta(days=1), END)
    return time.monotonic() - began


def synthetic_dag_ids(stack: CeleryStack) -> list[str]:
    from candlecast.config import load_pairs

    return [
        pair.stream.candles_dag_id
        for pair in load_pairs(stack.pairs).pairs
        if pair.exchange.startswith("synth")
    ]


@dataclass
class CpuMeter:
    """Cumulative CPU-seconds by role of the stack's processes, PostgreSQL's backends of its
    metadata database and the Redis server; a thread samples the backends every second."""

    stack: CeleryStack
    _backends: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuMeter:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _sample(self) -> None:
        import psycopg2

        services = self.stack.services
        connection = psycopg2.connect(
            host=services.postgres_host,
            port=services.postgres_port,
            user=services.postgres_user,
            dbname=services.admin_database,
            connect_timeout=30,
        )
        connection.autocommit = True
        try:
            while True:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s",
                        (self.stack.airflow_database,),
                    )
                    pids = [row[0] for row in cursor.fetchall()]
                for pid in pids:
                    self._backends[pid] = max(self._backends.get(pid, 0.0), _own_cpu(pid))
                if self._stop.wait(1.0):
                    return
        finally:
            connection.close()

    def snapshot(self) -> dict[str, float]:
        import psutil

        roles = dict.fromkeys(ROLES, 0.0)
        for component, popen in self.stack.procs.items():
            role = "workers" if component in self.stack.worker_names else component
            if role in roles:
                roles[role] += _tree_cpu(popen.pid)
        for pid in list(self._backends):
            self._backends[pid] = max(self._backends[pid], _own_cpu(pid))
        roles["postgres"] = sum(self._backends.values())
        redis = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"]
        roles["redis"] = sum(_own_cpu(p.pid) for p in redis)
        return roles


def _own_cpu(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _tree_cpu(pid: int) -> float:
    """A process tree's CPU-seconds: every live member's own time plus its reaped children's,
    so short-lived task processes count."""
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    spent = 0.0
    for proc in members:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        spent += t.user + t.system + t.children_user + t.children_system
    return spent


@dataclass(frozen=True)
class Phase:
    """One phase's outcome: its runs and task instances, wall, CPU by role, and the load."""

    workers: int
    runs: list[DagRun]
    tasks: list[dict[str, Any]]
    wall_s: float
    cpu_s: dict[str, float]
    load: tuple[float, float, float]

    @property
    def per_minute(self) -> float:
        return len(self.runs) / self.wall_s * 60

    @property
    def cpu_per_run(self) -> float:
        return sum(self.cpu_s.values()) / len(self.runs)

    @property
    def tasks_per_worker(self) -> dict[str, int]:
        return dict(sorted(Counter(str(t["hostname"]) for t in self.tasks).items()))

    @property
    def slots_busy(self) -> float:
        """The workers' slots' busy share: the tasks' durations over wall x workers."""
        return sum(float(t["duration"] or 0) for t in self.tasks) / (self.wall_s * self.workers)

    @property
    def cores_busy(self) -> float:
        """The deployment's CPU over the machine's cores during the phase."""
        return sum(self.cpu_s.values()) / (self.wall_s * (os.cpu_count() or 1))

    def bottleneck(self) -> str:
        """Where the phase waited: on busy worker slots, on the machine's cores (a load
        average at or above them, this deployment's own CPU named), or between tasks."""
        cores = os.cpu_count() or 1
        top = max(("scheduler", "api-server", "postgres", "redis"), key=self.cpu_s.__getitem__)
        if self.slots_busy >= BUSY_SLOTS:
            return f"the workers: their slots {self.slots_busy:.0%} busy (more workers help)"
        if self.load[0] >= cores:
            workers = self.cpu_s["workers"] / total(self)
            return (
                f"the machine's {cores} cores (load {self.load[0]:.1f}; this deployment used "
                f"{self.cores_busy:.0%} of them, its workers {workers:.0%} of that); worker "
                f"slots {self.slots_busy:.0%} busy"
            )
        return (
            f"scheduling between tasks: worker slots {self.slots_busy:.0%} busy; the largest "
            f"share beside the workers is the {top}'s"
        )


def total(phase: Phase) -> float:
    return sum(phase.cpu_s.values()) or 1.0


def run_phase(
    stack: CeleryStack,
    meter: CpuMeter,
    dag_ids: list[str],
    start: datetime,
    candles: int,
    timeout: float,
) -> Phase:
    """Backfill ``candles`` candles from ``start`` of every DAG at once; wait for them all."""
    client = stack.client()
    before, began = meter.snapshot(), datetime.now(UTC)
    end = start + CANDLE * candles
    backfills = [client.create_backfill(dag_id, start, end) for dag_id in dag_ids]
    runs = [run for backfill in backfills for run in client.wait_for_backfill(backfill, timeout)]
    after = meter.snapshot()
    tasks = [task for run in runs for task in client.task_instances(run)]
    ended = max(datetime.fromisoformat(t["end_date"]) for t in tasks)
    return Phase(
        workers=stack.workers,
        runs=runs,
        tasks=tasks,
        wall_s=(ended - began).total_seconds(),
        cpu_s={k: after[k] - before[k] for k in ROLES},
        load=os.getloadavg(),
    )


def scale_out(
    stack: CeleryStack, workers: list[int], candles: int, timeout: float
) -> Iterator[Phase]:
    """Phases at each worker count in ``workers`` (ascending, the first the stack's own),
    adding workers between them; each phase replays the ``candles`` after the last one's."""
    if workers != sorted(workers) or workers[0] != stack.workers:
        raise ValueError(f"worker counts {workers} must ascend from the stack's {stack.workers}")
    client = stack.client()
    dag_ids = synthetic_dag_ids(stack)
    client.wait_for_dags(dag_ids)
    for dag_id in dag_ids:
        client.unpause(dag_id)
    with CpuMeter(stack) as meter:
        for index, count in enumerate(workers):
            while stack.workers < count:
                stack.add_worker()
            stack.wait_workers()
            start = END + CANDLE * candles * index
            yield run_phase(stack, meter, dag_ids, start, candles, timeout)


def table(phases: list[Phase], idle: dict[str, float] | None = None) -> str:
    """The phases as a Markdown table (CPU-s per run all told, and with ``idle``, the idle
    deployment's CPU-s per second, net of it), then the speed-up and each bottleneck."""
    cpu = "CPU-s/run (net of idle)" if idle else "CPU-s/run"
    lines = [
        f"| workers | runs | DAG runs/min | {cpu} | scheduler | DAG processor "
        "| API server | PostgreSQL | Redis | workers | worker slots busy | tasks per worker "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        shares = " | ".join(f"{p.cpu_s[role] / total(p):.0%}" for role in ROLES)
        spread = ", ".join(f"{k} {v}" for k, v in p.tasks_per_worker.items())
        net = (
            f" ({p.cpu_per_run - sum(idle.values()) * p.wall_s / len(p.runs):.2f})" if idle else ""
        )
        lines.append(
            f"| {p.workers} | {len(p.runs)} | {p.per_minute:.1f} | {p.cpu_per_run:.2f}{net} | "
            f"{shares} | {p.slots_busy:.0%} | {spread} | {p.load[0]:.1f} |"
        )
    first = phases[0]
    lines += [
        f"{p.workers} worker(s): {p.per_minute / first.per_minute:.2f}x the DAG runs per minute "
        f"of {first.workers}; bottleneck {p.bottleneck()}"
        for p in phases
    ]
    return "\n".join(lines)
