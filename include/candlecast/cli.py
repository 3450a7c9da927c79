"""The ``candlecast`` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from candlecast import embedded, pipeline
from candlecast.config import ConfigError, PairConfig, load_pairs
from candlecast.errors import PermanentError
from candlecast.settings import get_settings

app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="candlecast: crypto price forecasts, honest and fresh.",
    no_args_is_help=True,
)
console = Console()

PairOpt = Annotated[str, typer.Option("--pair", "-p", help="Configured pair, e.g. BTC/USD")]
DateOpt = Annotated[datetime | None, typer.Option(help="UTC date or datetime")]


def _pair(symbol: str) -> PairConfig:
    try:
        return pipeline.pair_config(symbol)
    except (KeyError, ConfigError) as exc:
        console.print(f"[red]{exc.args[0] if isinstance(exc, KeyError) else exc}[/red]")
        raise typer.Exit(2) from None


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _last_day(pair: PairConfig) -> tuple[datetime, datetime]:
    """The newest complete day the pair has data for (its ``end``, or today)."""
    end = pair.end or datetime.now(UTC)
    end = end.replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=1), end


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Known failures (bad data, a failed gate, missing history) as one red line, exit 1."""
    try:
        yield
    except (PermanentError, ValueError, KeyError) as exc:
        console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(1) from None


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def pairs() -> None:
    """List the configured pairs."""
    settings = get_settings()
    try:
        config = load_pairs(settings.pairs)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"pairs in {settings.pairs}")
    for column in ("symbol", "exchange", "timeframe", "schedule", "DAG", "start", "end"):
        table.add_column(column)
    for p in config.pairs:
        end = p.end.isoformat() if p.end else "-"
        table.add_row(
            p.symbol,
            p.exchange,
            p.timeframe,
            p.schedule,
            f"pipeline_{p.key}",
            p.start.isoformat(),
            end,
        )
    console.print(table)


@app.command()
def run(
    pair: PairOpt,
    start: DateOpt = None,
    end: DateOpt = None,
    backfill_days: Annotated[int, typer.Option(help="Backfill this much history first")] = 0,
) -> None:
    """Run the whole pipeline once for one interval (default: the last day), without Airflow."""
    config = _pair(pair)
    first, last = _last_day(config)
    first, last = (_utc(start) if start else first), (_utc(end) if end else last)
    with _clean_errors():
        if backfill_days:
            pipeline.backfill(config, first - timedelta(days=backfill_days), first)
        result = pipeline.run_all(config, first, last)
    console.print_json(json.dumps(result, default=str))


@app.command()
def publish(pair: PairOpt, out: Annotated[Path, typer.Option(help="e.g. models/btc_usd")]) -> None:
    """Copy the pair's exported champion into a (DVC-tracked) folder."""
    console.print_json(json.dumps(pipeline.publish(_pair(pair), out)))


@app.command()
def backfill(
    pair: PairOpt,
    start: Annotated[datetime, typer.Option()],
    end: Annotated[datetime, typer.Option()],
) -> None:
    """Ingest, validate and compute features for a stretch of history (no training)."""
    config = _pair(pair)
    with _clean_errors():
        result = pipeline.backfill(config, _utc(start), _utc(end))
    console.print_json(json.dumps(result, default=str))


TimeframeOpt = Annotated[
    str | None, typer.Option("--timeframe", "-t", help="default: the pair's configured timeframe")
]


def _pair_at(symbol: str, timeframe: str | None) -> PairConfig:
    config = _pair(symbol)
    if timeframe and timeframe != config.timeframe:
        try:
            return PairConfig.model_validate(config.model_dump() | {"timeframe": timeframe})
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    return config


@app.command()
def ingest(
    pair: PairOpt,
    start: Annotated[datetime, typer.Option()],
    end: Annotated[datetime, typer.Option()],
    timeframe: TimeframeOpt = None,
) -> None:
    """Fetch candles from the pair's exchange into the raw store, then validate them."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from candlecast import data
    from candlecast.timeframes import to_ms

    config = _pair_at(pair, timeframe)
    first, last = to_ms(_utc(start)), to_ms(_utc(end))
    columns = [TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn()]
    with _clean_errors(), Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"{config.symbol} {config.timeframe}", total=last - first)
        result = data.ingest(
            config,
            _utc(start),
            _utc(end),
            on_progress=lambda ts: progress.update(bar, completed=ts - first),
        )
        progress.update(bar, completed=last - first)
    with _clean_errors():
        report = data.validate(config, _ms_dt(result.start_ms), _utc(end))
    console.print(f"{result.rows} candles stored; {report.summary()}")


@app.command("import-candles")
def import_candles(
    pair: PairOpt,
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="history file")],
    timeframe: TimeframeOpt = None,
    exchange: Annotated[str | None, typer.Option(help="store under this exchange")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="default: detected")] = None,
) -> None:
    """Import candle history (Binance dumps, CryptoDataDownload, freqtrade, CSV/parquet)."""
    from candlecast import data
    from candlecast.importers import read_history

    config = _pair_at(pair, timeframe)
    if exchange:
        config = config.model_copy(update={"exchange": exchange})
    with _clean_errors():
        batch = read_history(file, fmt)
        report = data.import_history(config, batch, f"import-{file.stem}")
    console.print(f"{file}: {len(batch)} candles imported; {report.summary()}")


@app.command()
def gaps(pair: PairOpt, timeframe: TimeframeOpt = None) -> None:
    """Report the candles missing from a pair's raw store: how many, and where."""
    from candlecast import data
    from candlecast.gaps import summarize

    native = _pair(pair)
    config = _pair_at(pair, timeframe)
    derived = config.timeframe in native.derived_timeframes
    found = data.stored_gaps(config, store="validated" if derived else "raw")
    table = Table(title=f"gaps in {config.symbol} {config.timeframe} ({config.exchange})")
    for column in ("from", "to (exclusive)", "missing candles"):
        table.add_column(column)
    for gap in found:
        table.add_row(_ms_iso(gap.start_ms), _ms_iso(gap.end_ms), str(gap.missing))
    console.print(table)
    totals = summarize(found)
    console.print(f"{totals['gaps']} gaps, {totals['missing_candles']} candles missing")


def _ms_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms_iso(ms: int) -> str:
    return _ms_dt(ms).isoformat()


@app.command("feast-apply")
def feast_apply() -> None:
    """Apply the Feast definitions (only if they changed)."""
    from candlecast import featurestore

    timeframes = [p.timeframe for p in load_pairs(get_settings().pairs).pairs]
    changed = featurestore.ensure_applied(timeframes)
    console.print("applied" if changed else "already up to date")


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="default: CANDLECAST_SERVICE_PORT")] = None,
    host: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Start the BentoML prediction service (foreground)."""
    settings = get_settings()
    command = embedded.bentoml_command(host or settings.service_host, port or settings.service_port)
    os.execve(command[0], command, embedded.bentoml_env(settings))


@app.command()
def demo(
    wait: Annotated[bool, typer.Option(help="Keep the UIs and service up until Ctrl-C")] = True,
    days: Annotated[
        int | None, typer.Option(help="History to backfill (default: train_days+7)")
    ] = None,
    runs: Annotated[int, typer.Option(help="Daily DAG runs, ending at the data's end")] = 2,
) -> None:
    """Backfill history, run each pair's Airflow DAG over its last days, serve a forecast."""
    settings = get_settings()
    config = load_pairs(settings.pairs)
    console.rule(f"candlecast demo - state in {settings.paths.home}")
    embedded.airflow("db", "migrate", settings=settings)
    embedded.airflow("dags", "reserialize", settings=settings)
    for p in config.pairs:
        _, last = _last_day(p)
        first = last - timedelta(days=runs)
        history = timedelta(days=days or p.train_days + 7)
        console.print(
            f"[bold]{p.symbol}[/bold]: backfilling {first - history:%Y-%m-%d} .. {first:%Y-%m-%d}"
        )
        pipeline.backfill(p, first - history, first)
        for day in range(runs - 1, -1, -1):
            run_end = last - timedelta(days=day)
            console.print(
                f"[bold]{p.symbol}[/bold]: airflow dags test pipeline_{p.key} {run_end:%Y-%m-%d}"
            )
            log = embedded.airflow("dags", "test", f"pipeline_{p.key}", run_end.isoformat())
            console.print(f"  {embedded.latest_decision(p)} (log: {log})")
    procs = embedded.start_services(settings)
    try:
        base = f"http://{settings.service_host}:{settings.service_port}"
        for p in config.pairs:
            console.print(f'POST {base}/predict {{"pair": "{p.symbol}"}}')
            console.print_json(
                json.dumps(embedded.post_json(f"{base}/predict", {"pair": p.symbol}))
            )
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
