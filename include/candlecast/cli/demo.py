"""The demo (the README's main command): every configured stream from bundled candles to a
forecast served over HTTP, through its Airflow DAG."""

from __future__ import annotations

import json
import os
import signal
from datetime import timedelta

from rich.console import Console

from candlecast.cli import embedded
from candlecast.config import PairConfig, load_pairs
from candlecast.orchestration import stages
from candlecast.settings import Settings, get_settings


def run_demo(console: Console, *, wait: bool, days: int | None, runs: int) -> None:
    """Backfill each stream's history, run its DAG for the last ``runs`` days of its data
    (``airflow dags test``), then serve and print a forecast for every stream."""
    settings = get_settings()
    config = load_pairs(settings.pairs)
    console.rule(f"candlecast demo - {len(config.pairs)} streams, state in {settings.paths.home}")
    embedded.airflow("db", "migrate", settings=settings)
    embedded.airflow("dags", "reserialize", settings=settings)
    for pair in config.pairs:
        label = f"[bold]{pair.stream.label}[/bold]"
        _, last = stages.last_complete_day(pair)
        first = last - timedelta(days=runs)
        history = timedelta(days=days or pair.training.train_days + 7)
        console.print(f"{label}: backfilling {first - history:%Y-%m-%d} .. {first:%Y-%m-%d}")
        stages.backfill(pair, first - history, first)
        for day in range(runs - 1, -1, -1):
            run_end = last - timedelta(days=day)
            dag = pair.stream.dag_id
            console.print(f"{label}: airflow dags test {dag} {run_end:%Y-%m-%d}")
            log = embedded.airflow("dags", "test", dag, run_end.isoformat())
            console.print(f"  {embedded.latest_decision(pair)} (log: {log})")
    _serve_and_show(console, settings, config.pairs, wait)


def _serve_and_show(
    console: Console, settings: Settings, pairs: list[PairConfig], wait: bool
) -> None:
    procs = embedded.start_services(settings)
    try:
        base = f"http://{settings.service_host}:{settings.service_port}"
        for pair in pairs:
            body = {"pair": pair.symbol, "exchange": pair.exchange, "timeframe": pair.timeframe}
            console.print(f"POST {base}/predict {json.dumps(body)}")
            console.print_json(json.dumps(embedded.post_json(f"{base}/predict", body)))
        console.print(f"Prediction service: {base}  (POST /predict, GET /health)")
        for name, url, health, proc in [
            ("MLflow UI", "http://127.0.0.1:5000", "/health", procs[1]),
            ("Airflow UI", "http://127.0.0.1:8080", "/api/v2/monitor/health", procs[2]),
        ]:
            try:
                embedded.wait_http(url + health, timeout=180, proc=proc)
                console.print(f"{name + ':':<20}{url}")
            except (RuntimeError, TimeoutError) as exc:
                console.print(
                    f"[yellow]{name} did not come up ({exc}); see {settings.paths.logs}[/]"
                )
        if wait:
            console.print("Press Ctrl-C to stop.")
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigwait(stop)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
