"""The demo (the README's main command): every configured stream from bundled candles to a
forecast served over HTTP, through the real Airflow scheduler.

It starts the embedded Airflow, unpauses each stream's train DAG, creates, through Airflow's
REST API, a backfill of each candles DAG over the last days of the stream's data (on a fresh
store the first run also fetches the history training needs) and then unpauses the candles
DAGs, so that no run starts while a backfill is being created. Each candles run emits its
features asset, which triggers the stream's train DAG: the demo does not backfill the train
DAGs, because a train run trains on the newest features it was triggered by, so the runs the
assets start are the ones an operator would get. When the scheduler has finished them, the
prediction service and the MLflow UI start and a forecast per stream is fetched over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from candlecast.cli import embedded
from candlecast.cli.airflow_api import AirflowClient, DagRun
from candlecast.cli.airflow_local import (
    EmbeddedAirflow,
    Interrupted,
    ignoring_signals,
    running,
    stop_on_signals,
)
from candlecast.cli.embedded import NO_PROMOTION
from candlecast.cli.verdict import stream_verdict
from candlecast.config import PairConfig, load_pairs
from candlecast.errors import ConfigError
from candlecast.orchestration import stages
from candlecast.settings import Settings, get_settings

#: Deadline for the scheduler to finish the demo's runs (2 cores, cold imports): generous.
RUNS_TIMEOUT_S = 4 * 3600.0


def run_demo(console: Console, *, wait: bool, runs: int) -> None:
    """Backfill the last ``runs`` days of each stream's candles DAG through the embedded
    Airflow, wait for those runs and the train runs they trigger, then serve and print a
    forecast for every stream (and keep the UIs up until Ctrl-C when ``wait``)."""
    if runs < 1:
        console.print(f"[red]--runs must be at least 1 (got {runs})[/red]")
        raise typer.Exit(2)
    settings = get_settings()
    try:
        config = load_pairs(settings.pairs)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.rule(f"candlecast demo - {len(config.pairs)} streams, state in {settings.paths.home}")
    local = EmbeddedAirflow.from_settings(settings)
    began = time.monotonic()
    with stop_on_signals():
        try:
            console.print(f"Starting Airflow on {local.url} (logs in {settings.paths.logs})")
            with running(local, config):
                client = local.client()
                _run_pipelines(console, client, config.pairs, runs)
                console.print(f"Pipelines done in {time.monotonic() - began:.0f} s")
                _serve_and_show(console, settings, config.pairs, local, wait)
        except Interrupted as stop:
            console.print(f"{stop}: stopped every process the demo started")
        except (RuntimeError, TimeoutError, ValueError) as exc:
            # a failed run (named, with its task's log), a component that exited, a deadline
            console.print(f"[red]{exc}[/red]\nEvery process the demo started was stopped.")
            raise typer.Exit(1) from None


def _run_pipelines(
    console: Console, client: AirflowClient, pairs: list[PairConfig], runs: int
) -> None:
    client.wait_for_dags(dag_id for pair in pairs for dag_id in pair.stream.dag_ids)
    for pair in pairs:
        # train first: it must see every event (the monitor DAG stays paused in the demo)
        client.unpause(pair.stream.train_dag_id)
        client.pause(pair.stream.candles_dag_id)  # paused on a fresh home; kept so on a rerun
    # Every backfill is created before any candles run can start, so no creation contends with
    # the scheduler working on the previous backfill's runs for SQLite's write lock: Airflow
    # creates each backfill run in a savepoint transaction that reads before it writes, and
    # SQLite fails that write at once, busy timeout or not, when another connection wrote
    # meanwhile (a creation failed part-way; wait_for_backfill repairs what that leaves).
    backfills = [_create_backfill(console, client, pair, runs) for pair in pairs]
    for pair in pairs:
        client.unpause(pair.stream.candles_dag_id)
    for backfill in backfills:
        client.wait_for_backfill(backfill, RUNS_TIMEOUT_S, on_run=_printer(console))
    for pair in pairs:
        client.wait_until_idle(pair.stream.train_dag_id, RUNS_TIMEOUT_S, on_run=_printer(console))
        console.print(f"  {pair.stream.label}: {embedded.latest_decision(pair)}")


def _create_backfill(
    console: Console, client: AirflowClient, pair: PairConfig, runs: int
) -> dict[str, Any]:
    """A backfill of the stream's candles DAG over its last ``runs`` complete days."""
    _, end = stages.last_complete_day(pair)
    start = end - timedelta(days=runs)
    console.print(
        f"[bold]{pair.stream.label}[/bold]: backfill {pair.stream.candles_dag_id} "
        f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}"
    )
    return client.create_backfill(pair.stream.candles_dag_id, start, end)


def _printer(console: Console) -> Callable[[DagRun], None]:
    def show(run: DagRun) -> None:
        colour = "green" if run.state == "success" else "red"
        console.print(f"  {run.dag_id} {run.run_id}: [{colour}]{run.state}[/{colour}]")

    return show


def _serve_and_show(
    console: Console,
    settings: Settings,
    pairs: list[PairConfig],
    local: EmbeddedAirflow,
    wait: bool,
) -> None:
    procs = embedded.start_services(settings)
    try:
        base = settings.service_base_url
        for pair in pairs:
            body = {"pair": pair.symbol, "exchange": pair.exchange, "timeframe": pair.timeframe}
            console.print(f"POST /predict {json.dumps(body)}")
            answer = embedded.post_json(f"{base}/predict", body)
            console.print(forecast_table(answer))
            reason = embedded.latest_decision(pair)
            for line in stream_verdict(answer, None if reason == NO_PROMOTION else reason):
                console.print(f"  {line}", overflow="fold")
        if not wait:
            return  # everything stops now: no URL of a stopped service is printed
        mlflow_up = _up(console, "MLflow UI", settings.mlflow_ui_url + "/health", procs[1])
        console.print(f"{'Prediction service:':<20}{base}  (POST /predict, GET /health)")
        if mlflow_up:
            console.print(f"{'MLflow UI:':<20}{settings.mlflow_ui_url}")
        console.print(f"{'Airflow UI:':<20}{local.url}  - {local.login_hint()}")
        console.print("Press Ctrl-C to stop.")
        while True:  # until a signal (Interrupted) or a component exits
            local.check_alive()
            _check_services(settings, procs)
            time.sleep(2)
    finally:
        with ignoring_signals():
            embedded.stop(procs)


def _check_services(settings: Settings, procs: list[subprocess.Popen]) -> None:
    """Raise naming the advertised service that exited (the demo then stops and exits 1)."""
    logs = settings.paths.logs
    names = (("the prediction service", "bentoml.log"), ("the MLflow UI", "mlflow.log"))
    embedded.check_running(
        (name, proc, logs / log) for (name, log), proc in zip(names, procs, strict=False)
    )


def _up(console: Console, name: str, url: str, proc: subprocess.Popen) -> bool:
    try:
        embedded.wait_http(url, timeout=300, proc=proc)
        return True
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[yellow]{name} did not come up ({exc}); see {get_settings().paths.logs}[/]")
        return False


def forecast_table(answer: dict[str, Any]) -> Table:
    """One row per target and horizon of a /predict answer: the forecast in user numbers, its
    90% interval, and which model serves it (a baseline when nothing beat it)."""
    table = Table(
        title=f"{answer['pair']} on {answer['exchange']} at {answer['timeframe']}: last close "
        f"{answer['last_close']:.6g} at {_when(answer['feature_timestamp'])} UTC"
    )
    # at 80 columns a cell wraps at its spaces (or folds) instead of being cut with "…"
    for column in ("target", "for (UTC)", "forecast", "90% interval", "served by"):
        table.add_column(column, overflow="fold")
    model = answer["model"]
    interval = answer.get("interval") or {}
    table.add_row(
        "return h1",
        _when(answer["forecast_for"]),
        f"{answer['predicted_price']:.6g} ({answer['predicted_return']:+.2%})",
        _band(interval.get("price")),
        f"{model['kind']} v{model['version']}",
    )
    for target in answer.get("targets", []):
        served = f"{target['model']['kind']} v{target['model']['version']}"
        served += " (baseline)" if target["model"]["baseline"] else ""
        if target["target"] == "volatility":
            value = f"sigma {target['sigma']:.2%} ({target['annualized_volatility']:.0%}/yr)"
            band = ""
        else:
            value = f"{target['price']:.6g} ({target['log_return']:+.2%})"
            levels = (target.get("intervals") or {}).get("levels", {})
            band = _band(levels.get("0.9", {}).get("price"))
        label = f"{target['target']} h{target['horizon']}"
        table.add_row(label, _when(target["forecast_for"]), value, band, served)
    for key in answer.get("targets_not_trained", []):
        table.add_row(key, "", "not trained yet", "", "")
    return table


def _when(iso: str) -> str:
    return iso[5:16].replace("T", " ")  # 2022-03-01T04:00:00+00:00 -> 03-01 04:00


def _band(prices: list[float] | None) -> str:
    return f"{prices[0]:.5g} - {prices[1]:.5g}" if prices else ""
