"""``candlecast models``, ``promote`` and ``rollback``: the registry by hand.

Moving the ``champion`` alias by hand is logged on the model version (who moved it, why, and
which version it replaced, so ``rollback`` can undo it). It follows the pipeline's order: the
version is exported with its parity check, deployed and smoke-tested, and only then aliased
(``--no-deploy`` exports and aliases, leaving the service as it is).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from candlecast.cli.app import (
    ExchangeOpt,
    PairOpt,
    TimeframeOpt,
    _clean_errors,
    _pair,
    app,
    console,
)
from candlecast.config import PairConfig
from candlecast.orchestration import stages

ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (logged on the version)")]
DeployOpt = Annotated[bool, typer.Option(help="Deploy the new champion before aliasing it")]


def _client() -> Any:
    from candlecast.modeling import registry

    registry.configure()
    return registry.client()


@app.command(rich_help_panel="Models")
def models(
    pair: PairOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
) -> None:
    """List the stream's registered versions: aliases, kind, interval and holdout metrics."""
    from candlecast.modeling import registry

    config = _pair(pair, exchange, timeframe)
    with _clean_errors():
        rows = registry.versions(_client(), config.stream)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    # nothing cut at 80 columns: short columns that never wrap, the outcome wraps whole
    table = Table(
        title=f"{config.stream.registered_model} (* champion)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="RMSE×: holdout RMSE over persistence's on the same rows",
    )
    for column in ("v", "aliases", "kind", "trained to", "RMSE×"):
        table.add_column(column, no_wrap=True)
    table.add_column("outcome", overflow="fold", ratio=1)
    for row in rows:
        star = "*" if "champion" in row["aliases"] else ""
        rmse, base = row["holdout_rmse"], row["persistence_rmse"]
        ratio = f"{rmse / base:.4f}" if rmse is not None and base else ""
        table.add_row(
            f"{row['version']}{star}",
            ",".join(row["aliases"]),
            row["kind"],
            str(row["interval_end"])[:16].replace("T", " "),
            ratio,
            row["outcome"] or row["champion_reason"],
        )
    console.print(table)


def _data_now(config: PairConfig) -> datetime:
    """The data time of a manual move: the newest validated candle's close (now when none)."""
    from candlecast.errors import MissingDataError

    try:
        return stages.newest_candle_close(config)
    except MissingDataError:
        return datetime.now(UTC)


def _switch(config: PairConfig, version: str, reason: str, how: str, deploy: bool) -> None:
    """Move ``champion`` in the pipeline's order: export with parity, deploy and smoke-test,
    and only then the alias, so a failure at any step leaves the registry and the service as
    they were (``stages.deploy`` undoes its deployment when the alias cannot move)."""
    from candlecast.modeling import promotion, registry

    moved: list[tuple[str | None, str]] = []

    def move() -> None:
        moved.append(registry.move_champion(_client(), config.stream, version, reason, how))
        # in force from now in data time: the platform forecasts later candles with it (the
        # alias has moved: a failure to record is reported, never undoes the move)
        try:
            promotion.record_manual_move(config, version, how, _data_now(config))
        except Exception as exc:
            console.print(f"[yellow]warning: the move was not recorded in the history: {exc}")

    with _clean_errors():
        exported = stages.export_version(config, version)
        if deploy:
            deployed = stages.deploy(config, exported, commit=move).bento_model
        else:
            move()
    previous, new = moved[0]
    console.print(f"{config.stream.registered_model}: champion v{previous} -> v{new} ({reason})")
    if deploy:
        console.print(f"deployed {deployed}")


@app.command(rich_help_panel="Models")
def promote(
    pair: PairOpt,
    version: Annotated[str, typer.Option(help="Registered version to make champion")],
    reason: ReasonOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    deploy: DeployOpt = True,
) -> None:
    """Make a version champion by hand (bypassing the gate), with a logged reason."""
    _switch(_pair(pair, exchange, timeframe), version, reason, "manual promote", deploy)


@app.command(rich_help_panel="Models")
def rollback(
    pair: PairOpt,
    reason: ReasonOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    deploy: DeployOpt = True,
) -> None:
    """Give ``champion`` back to the version that held it before, with a logged reason."""
    from candlecast.modeling import registry

    config = _pair(pair, exchange, timeframe)
    with _clean_errors():
        previous = registry.previous_champion(_client(), config.stream)
    if previous is None:
        console.print(f"[red]{config.stream.label}: no earlier champion is recorded[/red]")
        raise typer.Exit(1)
    _switch(config, previous, reason, "manual rollback", deploy)
