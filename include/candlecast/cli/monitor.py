"""``candlecast monitor``, ``drift``, ``exporter`` and ``grafana sync``: monitoring commands."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from candlecast.cli.app import (
    ExchangeOpt,
    HistoryFileOpt,
    PairOpt,
    TimeframeOpt,
    _clean_errors,
    _pair,
    _stream,
    app,
    console,
    error_line,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print only the JSON on stdout")]
grafana = typer.Typer(help="Grafana: datasources, dashboards and annotations as code.")
app.add_typer(grafana, name="grafana", rich_help_panel="Monitoring")


def parse_span(text: str) -> tuple[datetime, datetime]:
    """``START:END`` (ISO dates or times, UTC unless an offset is given; END exclusive).

    Raises:
        typer.BadParameter: not two times, or END not after START.
    """
    from candlecast.orchestration.stages import parse_time

    parts = re.split(r"(?:\.\.|:)(?=\d{4}-\d{2}-\d{2})", text.strip())
    if len(parts) != 2:
        raise typer.BadParameter(f"{text!r} is not START:END (e.g. 2020-03-01:2020-03-22)")
    try:
        start, end = parse_time(parts[0]), parse_time(parts[1])
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: {exc}") from None
    if end <= start:
        raise typer.BadParameter(f"{text!r}: END must be after START")
    return start, end


@app.command(rich_help_panel="Monitoring")
def monitor(
    pair: PairOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    as_of: Annotated[
        datetime | None, typer.Option(help="Check as of this UTC time [default: newest candle]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the monitor DAG's check once: drift, prediction drift, realized skill, and whether
    a retrain is due (the figures are stored; the request itself is the monitor DAG's)."""
    from candlecast.monitoring.check import check_pair
    from candlecast.orchestration.stages import parse_time

    config = _pair(pair, exchange, timeframe)
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr), _clean_errors():
        moment = parse_time(as_of.isoformat()) if as_of else None
        result = check_pair(config, moment)
    payload = result.to_dict()
    if as_json:
        stdout.write(json.dumps(payload, default=str) + "\n")
        return
    _drift_table(payload, f"drift: {config.stream.label} as of {payload['as_of']}")
    realized = payload["realized"] or {}
    source = payload["realized_source"]
    # one line per figure, whatever the terminal's width (the terminal folds it, a pipe or a
    # grep sees it whole)
    whose = {"platform": "the platform's forecasts of every candle", "service": "served"}
    console.print(
        f"realized ({whose.get(source or '', 'no forecasts logged')}): "
        f"{payload['realized_state']}; {realized.get('forecasts', 0)} forecasts, RMSE ratio "
        f"{realized.get('rmse_ratio')}, coverage {realized.get('coverage')}; "
        f"prediction drift: {payload['prediction_drift']}"
    )
    for version, figures in payload["realized_by_version"].items():
        console.print(
            f"  v{version}: {figures['forecasts']} forecasts, RMSE ratio {figures['rmse_ratio']}",
            soft_wrap=True,
        )
    for shadow in payload["shadows"]:
        console.print(
            f"  shadow v{shadow['version']} vs champion v{'/v'.join(shadow['champions'])}: "
            f"{shadow['forecasts']} realized, RMSE {shadow['rmse_vs_champion']}x the champion's "
            f"(p={shadow['p_value']}, {shadow['state']})",
            soft_wrap=True,
        )
    for line in _target_lines(payload["targets"]):
        console.print(line, soft_wrap=True)
    for level in payload["aci"]:
        console.print(
            f"  intervals {level['target']} {level['level']}: ACI level "
            f"{level['level_in_use']:.3f} (multiplier {level['multiplier']:.2f}, "
            f"{level['misses']} of {level['judged']} missed)",
            soft_wrap=True,
        )
    verdict = "retrain due" if payload["retrain"] else "no retrain"
    console.print(f"[bold]{verdict}[/bold]: {payload['reason']}", soft_wrap=True)
    if payload["report_path"]:
        console.print(f"Evidently report: {payload['report_path']}")
    if result.liquidity is not None and result.liquidity.thin:
        console.print(f"[yellow]warning: {result.liquidity.describe()}[/yellow]")


def _target_lines(targets: list[dict]) -> list[str]:
    """Each other target's realized skill from the platform's logged forecasts: as served,
    then per version."""
    lines = []
    for t in targets:
        lines.append(
            f"  target {t['key']} as served (v{t['version']} now): {t['forecasts']} realized, "
            f"{t['metric']} ratio to persistence {_figure(t['ratio'])} ({t['state']})"
        )
        lines += [
            f"    v{version}: {f['forecasts']} realized, {t['metric']} ratio "
            f"{_figure(f['ratio'])} ({f['state']})"
            for version, f in t["by_version"].items()
        ]
        lines += [
            f"    shadow v{s['version']} vs v{'/v'.join(s['champions'])}: {s['forecasts']} "
            f"realized, {s['metric']} {_figure(s['rmse_vs_champion'])}x the champion's "
            f"(p={_figure(s['p_value'])}, {'beats it' if s['beats_champion'] else s['state']})"
            for s in t["shadows"]
        ]
    return lines


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command(rich_help_panel="Monitoring")
def drift(
    pair: PairOpt,
    reference: Annotated[str, typer.Option(help="START:END of the reference window")],
    current: Annotated[str, typer.Option(help="START:END of the current window")],
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    file: HistoryFileOpt = None,
    report: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Also write the Evidently HTML report")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Data drift between two windows of a stream's history (or of a file), on the champion's
    inputs or, with no champion, the default feature set."""
    from candlecast.data.importers import read_history
    from candlecast.modeling.evaluate import infer_timeframe
    from candlecast.monitoring.check import champion_of, compare_windows
    from candlecast.monitoring.drift import report_html

    spans = parse_span(reference), parse_span(current)
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr), _clean_errors():
        candles = read_history(file) if file else None
        if candles is not None and timeframe is None:
            timeframe = infer_timeframe(candles["ts"])
        config, configured = _stream(pair, exchange or ("file" if file else None), timeframe)
        champion = champion_of(config) if configured else None
        columns = champion.features if champion else None
        found, before, after = compare_windows(config, *spans, columns=columns, candles=candles)
        if report:
            report.write_text(report_html(before, after, found))
    payload: dict[str, Any] = {
        **found.to_dict(),
        "stream": config.stream.key,
        "reference": [t.isoformat() for t in spans[0]],
        "current": [t.isoformat() for t in spans[1]],
        "champion_version": champion.version if champion else None,
        "source": str(file) if file else "validated store",
    }
    if as_json:
        stdout.write(json.dumps(payload) + "\n")
        return
    _drift_table(payload, f"drift: {config.stream.label}")


@app.command(rich_help_panel="Monitoring")
def exporter(
    port: Annotated[int, typer.Option(help="Port of /metrics")] = 9108,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
) -> None:
    """Serve the monitoring figures of the metrics table to Prometheus until interrupted."""
    import threading

    from candlecast.monitoring.exporter import serve

    serve(port, host)
    console.print(f"monitoring exporter on http://{host}:{port}/metrics")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def _drift_table(payload: dict[str, Any], title: str) -> None:
    table = Table("feature", "method", "score", "threshold", "drifted", title=title)
    for name, row in payload["features"].items():
        table.add_row(
            name, row["method"], f"{row['score']:.4g}", f"{row['threshold']:g}", str(row["drifted"])
        )
    console.print(table)
    console.print(
        f"drift detected: {payload['drift_detected']} (share {payload['drift_share']:.2f}, "
        f"threshold {payload['drift_share_threshold']:.2f})"
    )


@grafana.command("sync")
def grafana_sync(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://127.0.0.1:3001")],
    token: Annotated[
        str | None,
        typer.Option(envvar="GRAFANA_TOKEN", help="Service account token (or user:password)"),
    ] = None,
) -> None:
    """Push datasources, dashboards and annotations to Grafana (a second sync changes nothing)."""
    from grafana_client.client import GrafanaException

    from candlecast.monitoring.grafana import sync

    credential: Any = tuple(token.split(":", 1)) if token and ":" in token else token
    try:
        with _clean_errors():
            report = sync(url, credential)
    except OSError as exc:  # requests' connection errors are OSErrors
        error_line(f"cannot reach Grafana at {url} ({type(exc).__name__}): is it running?")
        raise typer.Exit(1) from None
    except GrafanaException as exc:
        error_line(f"Grafana at {url} refused the sync: {exc}")
        raise typer.Exit(1) from None
    for what, names in (("created", report.created), ("updated", report.updated)):
        for name in names:
            console.print(f"{what}: {name}")
    console.print(f"{report.writes} writes, {len(report.unchanged)} unchanged")


@grafana.command("dashboards")
def grafana_dashboards(
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the files differ from the generated ones")
    ] = False,
) -> None:
    """Write deploy/grafana/dashboards/cc-STREAM.json for every configured stream, and the
    service's dashboard."""
    from candlecast.cli.app import _config
    from candlecast.monitoring.dashboards import stale_dashboards, write_dashboards

    streams = _config().streams
    if check:
        stale = stale_dashboards(streams)
        if stale:
            console.print(f"[red]stale dashboards: {', '.join(stale)}[/red]; run without --check")
            raise typer.Exit(1)
        console.print("dashboards are up to date")
        return
    for path in write_dashboards(streams):
        console.print(f"wrote {path}", soft_wrap=True, highlight=False)
