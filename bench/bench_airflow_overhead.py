"""What Airflow adds to one stream's day: the candles and train runs under the real scheduler
against the same stages called directly.

    .venv/bin/python bench/bench_airflow_overhead.py [--kinds lightgbm] [--train-days 30]

In a throwaway data directory with the bundled BTC/USD hourly stream (daily candles DAG), the
history is loaded first (not timed). Then, for two successive new days:

* **direct**: ``candlecast run`` for the day in a fresh process (ingest, validate, features,
  materialize, train, promote, export, deploy; imports included, as a task pays them too);
* **airflow**: the embedded Airflow (LocalExecutor, started beforehand and not timed) runs a
  backfill of the candles DAG over the next day; its features asset triggers the train DAG;
  timed from the backfill's creation until the train run has succeeded.

Prints both wall times, their ratio (aim: under 1.5x), and each task's duration and the time
from its predecessor's end to its start (scheduling latency).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
END = datetime(2022, 3, 1, tzinfo=UTC)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(path: Path, kinds: str, train_days: int) -> None:
    path.write_text(
        "pairs:\n"
        "  - symbol: BTC/USD\n"
        f"    replay_file: {REPO / 'data' / 'bundled' / 'BTC_USD-Hourly.csv'}\n"
        "    timeframe: 1h\n"
        '    schedule: "@daily"\n'
        "    start: 2021-06-01T00:00:00Z\n"
        f"    end: {END.isoformat()}\n"
        f"    training: {{train_days: {train_days}, kinds: [{kinds}], schedule: null}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kinds", default="lightgbm")
    parser.add_argument("--train-days", type=int, default=30)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="candlecast-bench-airflow-"))
    config = root / "pairs.yaml"
    _config(config, args.kinds, args.train_days)
    os.environ.update(
        CANDLECAST_HOME=str(root / "home"),
        CANDLECAST_PAIRS=str(config),
        BENTOML_HOME=str(root / "home" / "bentoml"),
        CANDLECAST_SERVICE_PORT=str(_port()),  # nothing listens: announcements fail quietly
    )
    from candlecast.cli.airflow_local import EmbeddedAirflow, running
    from candlecast.config import load_pairs
    from candlecast.orchestration import stages
    from candlecast.settings import get_settings

    settings = get_settings()
    pair = load_pairs(config).pairs[0]
    direct_day, airflow_day = END - timedelta(days=2), END - timedelta(days=1)
    history = direct_day - timedelta(days=args.train_days + 25)
    print(f"loading history {history:%Y-%m-%d} .. {direct_day:%Y-%m-%d} (not timed)")
    stages.backfill(pair, history, direct_day)

    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "candlecast"), "run", "--pair", "BTC/USD",
         "--start", f"{direct_day:%Y-%m-%d}", "--end", f"{airflow_day:%Y-%m-%d}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    direct = time.perf_counter() - started
    print(f"direct  candlecast run {direct_day:%Y-%m-%d}: {direct:7.1f} s")

    airflow = EmbeddedAirflow.from_settings(settings, "127.0.0.1", _port())
    with running(airflow, load_pairs(config)):
        client = airflow.client()
        client.wait_for_dags(pair.stream.dag_ids)
        for dag_id in (pair.stream.train_dag_id, pair.stream.candles_dag_id):
            client.unpause(dag_id)
        started = time.perf_counter()
        backfill = client.create_backfill(pair.stream.candles_dag_id, airflow_day, END)
        candles = client.wait_for_backfill(backfill, timeout=3600)
        trains = client.wait_until_idle(pair.stream.train_dag_id, timeout=3600)
        scheduled = time.perf_counter() - started
        # by Airflow's own clock: the backfill's creation to the train run's end (the polling
        # above adds a few seconds)
        train = client.request(
            "GET", f"/api/v2/dags/{trains[-1].dag_id}/dagRuns/{trains[-1].run_id}"
        )
        stamps = client.backfill(backfill["id"])["created_at"], train["end_date"]
        own = (
            datetime.fromisoformat(stamps[1]) - datetime.fromisoformat(stamps[0])
        ).total_seconds()
        print(f"airflow candles + train {airflow_day:%Y-%m-%d}: {scheduled:7.1f} s polled, "
              f"{own:.1f} s by Airflow's timestamps")  # fmt: skip
        print(f"ratio airflow / direct: {own / direct:.2f} (aim < 1.5)")
        busy = 0.0
        for run in [*candles, *trains]:
            busy += _print_tasks(client, run)
        print(f"tasks ran {busy:.1f} s of it; the rest is scheduling and process start-up")


def _print_tasks(client, run) -> float:  # type: ignore[no-untyped-def]
    tasks = sorted(client.task_instances(run), key=lambda t: t.get("start_date") or "")
    previous_end, total = None, 0.0
    print(f"  {run.dag_id} {run.run_id}")
    for task in tasks:
        start, end = (
            datetime.fromisoformat(task[k]) if task.get(k) else None
            for k in ("start_date", "end_date")
        )
        took = (end - start).total_seconds() if start and end else float("nan")
        wait = (start - previous_end).total_seconds() if start and previous_end else 0.0
        name = task["task_id"] + (
            f"[{task['map_index']}]" if task.get("map_index", -1) >= 0 else ""
        )
        print(f"    {name:<16} {took:7.1f} s   waited {wait:5.1f} s")
        previous_end = end or previous_end
        total += 0.0 if took != took else took
    return total


if __name__ == "__main__":
    main()
