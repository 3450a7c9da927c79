"""The ``candlecast`` command line.

A stream is named with ``--pair`` (a symbol, or a stream key like ``binance_btc_usdt_1h``),
narrowed with ``--exchange`` and ``--timeframe`` when the symbol alone is ambiguous.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from candlecast.cli import embedded
from candlecast.cli.progress import count_bar, steps_bar
from candlecast.config import PairConfig, PairsConfig, load_pairs
from candlecast.errors import ConfigError, PermanentError
from candlecast.orchestration import stages
from candlecast.settings import get_settings
from candlecast.timeframes import ms_to_datetime, ms_to_iso


def _flags_take_no_placeholder() -> None:
    """Typer (0.29) draws a value placeholder (``<bool>``) beside every flag in help, as if
    it took a value; a flag's type column stays empty instead (options with a value keep
    theirs)."""
    from typer.core import TyperOption

    drawn = TyperOption.display_type_rich
    if getattr(drawn, "candlecast", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and not self.count else drawn(self, ctx)

    display_type_rich.candlecast = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_placeholder()
app = typer.Typer(
    pretty_exceptions_show_locals=False,
    # help texts are paragraphs: their line breaks are the source's, not the reader's
    rich_markup_mode="markdown",
    help="candlecast: crypto price forecasts, honest and fresh.",
    no_args_is_help=True,
)
console = Console()

PairOpt = Annotated[
    str, typer.Option("--pair", "-p", help="Symbol (BTC/USD) or stream key (replay_btc_usd_1h)")
]
ExchangeOpt = Annotated[str | None, typer.Option("--exchange", "-e", help="e.g. binance")]
TimeframeOpt = Annotated[str | None, typer.Option("--timeframe", "-t", help="e.g. 1h, 5m")]
DateOpt = Annotated[datetime | None, typer.Option(help="UTC date or datetime")]
StartOpt = Annotated[datetime, typer.Option(help="UTC date or datetime (inclusive)")]
EndOpt = Annotated[datetime, typer.Option(help="UTC date or datetime (exclusive)")]
HistoryFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        exists=True,
        dir_okay=False,
        help="History file (any format import-candles reads) instead of stored candles",
    ),
]


def error_line(message: str) -> None:
    """A one-line error in red: never wrapped at the terminal width, never read as markup."""
    console.print(f"[red]{escape(message)}[/red]", soft_wrap=True)


def _config() -> PairsConfig:
    try:
        return load_pairs(get_settings().pairs)
    except ConfigError as exc:
        error_line(str(exc))
        raise typer.Exit(2) from None


def _pair(symbol: str, exchange: str | None = None, timeframe: str | None = None) -> PairConfig:
    """A configured stream; a clear message and exit 2 when none or several match."""
    try:
        return _config().resolve(symbol, exchange, timeframe)
    except PermanentError as exc:
        error_line(str(exc))
        raise typer.Exit(2) from None


def _stream(symbol: str, exchange: str | None, timeframe: str | None) -> tuple[PairConfig, bool]:
    """The configured stream, or (with exchange and timeframe given) one that is not
    configured yet, with the config's defaults; the flag says whether it is configured."""
    config = _config()
    try:
        return config.resolve(symbol, exchange, timeframe), True
    except PermanentError as exc:
        if exchange is None or timeframe is None:
            error_line(str(exc))
            console.print("Give --exchange and --timeframe to work on a stream not configured yet.")
            raise typer.Exit(2) from None
    try:
        return config.adhoc(symbol.upper().replace("_", "/"), exchange, timeframe), False
    except (ConfigError, ValueError) as exc:
        error_line(str(exc))
        raise typer.Exit(2) from None


def _hint(pair: PairConfig, configured: bool) -> None:
    if not configured:
        console.print(
            f"{pair.stream.label} is not configured. To forecast it, add this line under "
            f"'pairs:' in {get_settings().pairs}:\n  {pair.config_line()}"
        )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Known failures (bad data, a failed gate, missing history) as one red line, exit 1."""
    try:
        yield
    except (PermanentError, ValueError, KeyError) as exc:
        error_line(f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


def _print(result: Any) -> None:
    payload = asdict(result) if is_dataclass(result) and not isinstance(result, type) else result
    console.print_json(json.dumps(payload, default=_jsonable))


def _jsonable(value: Any) -> Any:
    """A typed record inside a stage result (the exported model and its card) as JSON."""
    from pydantic import BaseModel

    return value.model_dump(mode="json") if isinstance(value, BaseModel) else str(value)


def backfill_summary(result: Any) -> list[tuple[str, str]]:
    """What a backfill did, one line per stage (:class:`~candlecast.orchestration.stages.
    Backfilled`)."""
    fetched, checked, rows = result.ingest, result.validate, result.features
    span = f"{ms_to_iso(fetched.start_ms)[:16]} .. {ms_to_iso(fetched.end_ms)[:16]}"
    return [
        ("ingested", f"{fetched.rows} candles fetched for {span}"),
        (
            "validated",
            f"{checked.rows} candles passed, {checked.refused} refused, {checked.flagged} "
            f"flagged; {checked.missing_share:.1%} missing",
        ),
        ("features", f"{rows.rows} feature rows"),
    ]


def run_summary(result: Any) -> list[tuple[str, str]]:
    """What a pipeline run did, one line per stage, in words (:class:`~candlecast.
    orchestration.stages.PipelineRun`; ``--json`` prints all of it)."""
    lines = backfill_summary(result.backfill)
    trained, decision, exported, deployed = (
        result.train,
        result.promote,
        result.export,
        result.deploy,
    )
    challenger = trained.challenger
    metric = trained.metric
    score = challenger.metrics.get(f"holdout_{metric}")
    kinds = ", ".join(run.kind for run in trained.runs)
    lines.append(
        (
            "trained",
            f"{kinds}; challenger {challenger.kind}"
            + (f" (holdout {metric} {score:.6g})" if score is not None else ""),
        )
    )
    lines.append(
        (
            "decision",
            f"{decision.outcome}: {decision.champion_kind} v{decision.champion_version} is "
            f"champion; {decision.reason}",
        )
    )
    lines.append(
        (
            "exported",
            f"v{exported.version} ({exported.kind}) to ONNX, parity "
            f"{exported.parity_max_abs_diff:.2g} on {exported.parity_rows} rows"
            + (f"; {exported.fallback}" if getattr(exported, "fallback", None) else ""),
        )
    )
    forecast = deployed.forecast
    lines.append(
        (
            "served",
            f"{deployed.bento_model}: for {str(forecast.get('forecast_for', ''))[:16]} "
            f"price {forecast.get('predicted_price', float('nan')):.6g} "
            f"(return {forecast.get('predicted_return', float('nan')):+.3g})",
        )
    )
    targets = [t for t in result.targets if not t.skipped]
    if targets:
        served = ", ".join(f"{t.target_key} {t.kind}" for t in targets)
        lines.append(("targets", served))
    skipped = [t.target_key for t in result.targets if t.skipped]
    if skipped:
        lines.append(("not yet", f"{', '.join(skipped)}: too little history for their features"))
    return lines


def _show_version(asked: bool) -> None:
    if asked:
        from candlecast import __version__

        console.print(f"candlecast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # MLflow sets its own loggers to INFO on import ("Creating initial MLflow database
        # tables", "Validating input example"): a command's output is its summary
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


@app.command(rich_help_panel="Data")
def pairs() -> None:
    """List the configured streams and the names derived from them."""
    from candlecast.data.sources import check_source
    from candlecast.modeling.kinds import check_training

    config = _config()
    console.print(f"[bold]{len(config.pairs)} streams in {get_settings().pairs}[/bold]")
    for p in config.pairs:
        with _clean_errors():
            check_training(p.training, p.stream.label)
            check_source(p)
        # one block per stream, one fact per line: nothing a user needs is cut at 80 columns
        start = f"{p.start:%Y-%m-%d %H:%M}" if p.start else "now"
        end = f"{p.end:%Y-%m-%d %H:%M}" if p.end else "ongoing"
        block = Table.grid(padding=(0, 2))
        block.add_column(style="dim", no_wrap=True)
        block.add_column(overflow="fold")
        block.add_row("key", p.stream.key)
        block.add_row("DAGs", "\n".join(p.stream.dag_ids))
        block.add_row("kinds", ", ".join(p.training.kinds))
        block.add_row("data", f"{start} .. {end} (UTC)")
        block.add_row("model", p.stream.registered_model)
        block.add_row("liquidity", _liquid(p))
        console.print(f"\n[bold]{p.stream.label}[/bold]")
        console.print(block)


def _liquid(pair: PairConfig) -> str:
    """The liquidity of a stream's stored candles, for the ``pairs`` table."""
    from candlecast.data.quality import stored_liquidity

    found = stored_liquidity(pair.stream)
    if found is None:
        return "-"
    text = found.describe()
    return f"[yellow]{text}[/yellow]" if found.thin else text


@app.command(rich_help_panel="Pipeline")
def run(
    pair: PairOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    start: DateOpt = None,
    end: DateOpt = None,
    backfill_days: Annotated[int, typer.Option(help="Backfill this much history first")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole record as JSON instead")
    ] = False,
) -> None:
    """Run the whole pipeline once for one interval (default: the last day), without Airflow.
    On a fresh data directory it fetches the history the features and training need first.
    One run of a stream at a time: a second one stops at once, naming the first. Prints a
    short summary: what was ingested, the decision, what is served."""
    from candlecast.errors import StreamBusyError
    from candlecast.orchestration.runlock import stream_run

    config = _pair(pair, exchange, timeframe)
    first, last = stages.last_complete_day(config)
    first, last = (_utc(start) if start else first), (_utc(end) if end else last)
    steps: tuple[str, ...] = stages.RUN_STEPS
    if backfill_days:
        steps = tuple(f"history {step}" for step in stages.BACKFILL_STEPS) + steps
    try:
        with (
            _clean_errors(),
            stream_run(config.stream),
            steps_bar(console, config.stream.label, steps) as starting,
        ):
            if backfill_days:
                history = first - timedelta(days=backfill_days)
                stages.backfill(
                    config, history, first, on_step=lambda step: starting(f"history {step}")
                )
            result = stages.run_all(config, first, last, on_step=starting)
    except StreamBusyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        _print(result)
        return
    console.print(
        f"[bold]{config.stream.label}[/bold]: {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}"
    )
    for name, text in run_summary(result):
        console.print(f"  {name:<10} {text}", soft_wrap=True, highlight=False, markup=False)


@app.command(rich_help_panel="Models")
def publish(
    pair: PairOpt,
    out: Annotated[Path, typer.Option(help="e.g. models/replay_btc_usd_1h")],
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """Copy the stream's exported champion into a (DVC-tracked) folder."""
    config = _pair(pair, exchange, timeframe)
    with _clean_errors():
        published = stages.publish(config, out)
    console.print(
        f"{config.stream.label}: champion v{published['version']} published to {published['out']}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def _span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``--start`` and ``--end`` in UTC; one line and exit 1 unless the start is before the
    end (a reversed span would otherwise read as "nothing there")."""
    first, last = _utc(start), _utc(end)
    if last <= first:
        error_line(f"--start ({first.isoformat()}) must be before --end ({last.isoformat()})")
        raise typer.Exit(1)
    return first, last


@app.command(rich_help_panel="Data")
def backfill(
    pair: PairOpt,
    start: StartOpt,
    end: EndOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole record as JSON instead")
    ] = False,
) -> None:
    """Ingest, validate and compute features for a stretch of history (no training)."""
    config = _pair(pair, exchange, timeframe)
    first, last = _span(start, end)
    with (
        _clean_errors(),
        steps_bar(console, config.stream.label, stages.BACKFILL_STEPS) as starting,
    ):
        result = stages.backfill(config, first, last, on_step=starting)
    if as_json:
        _print(result)
        return
    console.print(f"[bold]{config.stream.label}[/bold]: backfilled {start} .. {end}")
    for name, text in backfill_summary(result):
        console.print(f"  {name:<10} {text}", soft_wrap=True, highlight=False, markup=False)


@app.command(rich_help_panel="Data")
def ingest(
    pair: PairOpt,
    start: StartOpt,
    end: EndOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """Fetch candles from the stream's exchange into the raw store, then validate them."""
    from candlecast.data import ingestion
    from candlecast.timeframes import timeframe_ms, to_ms

    config, configured = _stream(pair, exchange, timeframe)
    first, last = (to_ms(moment) for moment in _span(start, end))
    step = timeframe_ms(config.timeframe)
    total = -(-(last - first) // step)  # candles opening in [start, end)
    with _clean_errors(), count_bar(console, config.stream.label, total, "candles") as fetched:
        result = ingestion.ingest(
            config,
            _utc(start),
            _utc(end),
            # a fresh store's history before --start counts as none of the interval's
            on_progress=lambda ts: fetched(max(0, (ts - first) // step + 1)),
        )
    with _clean_errors():
        report = ingestion.validate(config, ms_to_datetime(result.start_ms), _utc(end))
    console.print(f"{result.rows} candles stored; {report.summary()}")
    _hint(config, configured)


#: The steps of ``import-candles``, as its progress bar counts them.
IMPORT_STEPS = ("read", "validate and store")


@app.command("import-candles", rich_help_panel="Data")
def import_candles(
    pair: PairOpt,
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="history file")],
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help="default: detected")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="replace stored candles that differ (kept for undo)")
    ] = False,
    from_trades: Annotated[
        bool, typer.Option(help="the file holds trades: resample them into the stream's candles")
    ] = False,
) -> None:
    """Import candle history (Binance dumps, CryptoDataDownload, Kraken OHLCVT, Coinbase API
    pages, freqtrade, CSV/parquet; trades files with --from-trades), for a configured stream
    or, with --exchange and --timeframe, one not configured yet. Impossible rows are refused
    and kept in the quarantine; a file that differs from stored validated candles is refused
    (quarantined, differences listed) unless --overwrite."""
    from candlecast.data import ingestion
    from candlecast.data.importers import read_history

    config, configured = _stream(pair, exchange, timeframe)
    with (
        _clean_errors(),
        steps_bar(console, f"{file.name} into {config.stream.label}", IMPORT_STEPS) as starting,
    ):
        trades_to = config.timeframe if from_trades else None
        starting("read")
        batch = read_history(file, fmt, symbol=config.symbol, from_trades=trades_to)
        starting("validate and store")
        report = ingestion.import_history(config, batch, f"import-{file.stem}", overwrite=overwrite)
    console.print(
        f"{file}: {len(batch)} candles imported; {report.summary()}",
        soft_wrap=True,
        highlight=False,
    )
    _hint(config, configured)


@app.command(rich_help_panel="Data")
def gaps(pair: PairOpt, exchange: ExchangeOpt = None, timeframe: TimeframeOpt = None) -> None:
    """Report the candles missing from a stream's store: how many, and where."""
    from candlecast.data import ingestion, quality
    from candlecast.data.gaps import summarize

    config, configured = _stream(pair, exchange, timeframe)
    stored = (ingestion.validated_table(config.stream), ingestion.raw_table(config.stream))
    if all(table.last_key() is None for table in stored):
        console.print(
            f"no candles of {config.stream.label} are stored yet (nothing to find gaps in): "
            f"fetch them with `candlecast ingest` or `candlecast import-candles`",
            soft_wrap=True,
        )
        return
    # the validated store is what features and training read: raw candles no validation
    # passed are no history, however complete the raw store looks
    found = ingestion.stored_gaps(config.stream, store="validated")
    table = Table(title=f"gaps in {config.stream.label}")
    for column in ("from", "to (exclusive)", "missing candles"):
        table.add_column(column)
    for gap in found:
        table.add_row(ms_to_iso(gap.start_ms), ms_to_iso(gap.end_ms), str(gap.missing))
    console.print(table)
    totals = summarize(found)
    console.print(f"{totals['gaps']} gaps, {totals['missing_candles']} candles missing")
    waiting = ingestion.unvalidated_candles(config.stream)
    if len(waiting):
        first, last = ms_to_iso(int(waiting[0])), ms_to_iso(int(waiting[-1]))
        console.print(
            f"{len(waiting)} fetched candles not validated yet, from {first} to {last} "
            "(counted missing; the next run validates them)"
        )
    refused = quality.refused_candles(config.stream)
    if len(refused):
        first = ms_to_iso(int(refused[0]))
        console.print(
            f"{len(refused)} fetched candles refused by validation (not validated, counted "
            f"missing; the first {first}); the quarantine keeps each with its rule"
        )
    flagged = quality.stored_flags(config.stream)
    if flagged:
        counts = ", ".join(f"{name} {count}" for name, count in flagged.items())
        console.print(f"candles stored with flags: {counts}")
    found_liquidity = quality.stored_liquidity(config.stream)
    if found_liquidity is not None and found_liquidity.thin:
        console.print(f"[yellow]warning: {found_liquidity.describe()}[/yellow]")
    _hint(config, configured)


@app.command("feast-apply", rich_help_panel="Pipeline")
def feast_apply() -> None:
    """Apply the Feast definitions (only if they changed)."""
    from candlecast.features import featurestore

    changed = featurestore.ensure_applied(stages.configured_timeframes())
    console.print("applied" if changed else "already up to date")


@app.command(rich_help_panel="Serving")
def serve(
    port: Annotated[int | None, typer.Option(help="default: CANDLECAST_SERVICE_PORT")] = None,
    host: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Start the BentoML prediction service (foreground)."""
    from candlecast.serving.endpoint import record_endpoint

    settings = get_settings()
    host, port = host or settings.service_host, port or settings.service_port
    command = embedded.bentoml_command(host, port)
    stopped = embedded.replace_orphans(port)
    if stopped:
        console.print(
            f"stopped what an earlier service left on port {port} (pids {stopped}); starting anew"
        )
    # this process becomes the server (exec keeps the pid): the pipeline announces news here
    record_endpoint(f"http://{host}:{port}", os.getpid(), settings)
    os.execve(command[0], command, embedded.bentoml_env(settings))


@app.command(rich_help_panel="Pipeline")
def demo(
    wait: Annotated[bool, typer.Option(help="Keep the UIs and service up until Ctrl-C")] = True,
    runs: Annotated[int, typer.Option(help="Days of candles runs, ending at the data's end")] = 2,
) -> None:
    """Run every stream's DAGs over its last days under the embedded Airflow, serve forecasts."""
    from candlecast.cli.demo import run_demo

    run_demo(console, wait=wait, runs=runs)
