"""``candlecast replay``: the retraining loop over history, policies side by side."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from candlecast.cli.app import (
    EndOpt,
    ExchangeOpt,
    HistoryFileOpt,
    PairOpt,
    StartOpt,
    TimeframeOpt,
    _clean_errors,
    _span,
    _stream,
    _utc,
    app,
    console,
)


@app.command(rich_help_panel="Monitoring")
def replay(
    pair: PairOpt,
    start: StartOpt,
    end: EndOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    file: HistoryFileOpt = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="never, cadence or triggers (repeat it) [default: all three]"),
    ] = None,
    cadence: Annotated[
        str | None,
        typer.Option(help="Retrain period, e.g. 7d [default: the pair's training.schedule]"),
    ] = None,
    check_every: Annotated[
        str | None,
        typer.Option(help="Monitoring check period, e.g. 1d [default: monitoring.schedule]"),
    ] = None,
    kinds: Annotated[
        str | None, typer.Option(help="Comma-separated kinds [default: the pair's]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON on stdout")] = False,
    html: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Also write an HTML page with the plots")
    ] = None,
) -> None:
    """Replay the retraining loop over [START, END) point in time: every candle forecast by
    the champion in force and judged, each policy's retrains, and whether triggers paid off."""
    from candlecast.monitoring import replay as engine
    from candlecast.monitoring.replay_report import html_page, report

    stdout = sys.stdout
    first, last = _span(start, end)
    span = (_ms(first), _ms(last))
    with contextlib.redirect_stdout(sys.stderr), _clean_errors():
        candles, timeframe = _candles(file, timeframe)
        config, _ = _stream(pair, exchange or ("file" if file else None), timeframe)
        chosen = kinds.split(",") if kinds else list(config.training.kinds)
        chosen = [k.strip() for k in chosen if k.strip()]
        if candles is None:
            candles = _stored(config, span)
        history = engine.history_of(candles, config.timeframe, config.stream.market_key)
        found = engine.replay(
            history,
            config,
            _trainable(chosen),
            span,
            policies=policy or engine.POLICIES,
            cadence_ms=_period(cadence or config.training.schedule or "@daily", "--cadence"),
            check_ms=_period(check_every or config.monitoring.schedule, "--check-every"),
        )
        payload = report(found, config.stream.key)
        if html:
            html.write_text(html_page(found, payload))
    if as_json:
        stdout.write(json.dumps(payload) + "\n")
        return
    _show(payload)


def _candles(file: Path | None, timeframe: str | None) -> tuple[Any, str | None]:
    if file is None:
        return None, timeframe
    from candlecast.data.importers import read_history
    from candlecast.modeling.evaluate import infer_timeframe

    candles = read_history(file)
    return candles, timeframe or infer_timeframe(candles["ts"])


def _stored(config: Any, span: tuple[int, int]) -> Any:
    from candlecast.data.ingestion import validated_table
    from candlecast.data.quality import usable_candles

    step = 86_400_000 * config.training.train_days
    first = int(span[0] - step) - 2 * 86_400_000
    return usable_candles(config, validated_table(config.stream).read(first, span[1]))


def _period(text: str, option: str) -> int:
    from candlecast.monitoring.replay import parse_period

    try:
        return parse_period(text)
    except ValueError as exc:
        raise ValueError(f"{exc}; give it with {option}") from None


def _trainable(kinds: list[str]) -> list[str]:
    from candlecast.modeling.kinds import get_kind

    found = [k for k in kinds if get_kind(k).trainable]
    if not found:
        raise ValueError(f"no trainable kind among {kinds}")
    return found


def _ms(moment: datetime) -> int:
    return int(_utc(moment).timestamp() * 1000)


def _show(payload: dict[str, Any]) -> None:
    # short headers, no cell cut at 80 columns: ratios are to persistence, direction beside
    # the majority direction's rate
    table = Table(
        "policy",
        "forecasts",
        "RMSE×",
        "MAE×",
        "dir",
        "major",
        "cover",
        "retrain",
        "fit s",
        title=f"replay: {payload['stream']} {payload['start'][:16]} .. {payload['end'][:16]}",
        caption="RMSE×, MAE×: ratio to persistence; dir: directional accuracy (major: the "
        "majority direction's rate); cover: 90% interval coverage",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in table.columns:
        column.no_wrap = True
    for name, figures in payload["policies"].items():
        real = figures["realized"]
        table.add_row(
            name,
            str(real["forecasts"]),
            *(_fmt(real.get(k)) for k in ("rmse_ratio", "mae_ratio")),
            *(_fmt(real.get(k), 3) for k in ("directional_accuracy", "majority_rate", "coverage")),
            str(figures["retrains"]),
            f"{figures['compute_s']:.1f}",
        )
    console.print(table)
    console.print(payload["comparison"]["verdict"])


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
