"""``candlecast evaluate``: walk-forward evaluation of model kinds from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from candlecast.cli.app import (
    ExchangeOpt,
    PairOpt,
    TimeframeOpt,
    _clean_errors,
    _stream,
    app,
    console,
)
from candlecast.settings import get_settings


@app.command(rich_help_panel="Models")
def evaluate(
    pair: PairOpt,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="History file (any format import-candles reads) instead of the stored "
            "candles; the stream need not be configured (exchange default: file, timeframe "
            "default: the candles' spacing)",
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Kinds, comma-separated, or 'all' (default: the stream's training.kinds); "
            "persistence is always evaluated"
        ),
    ] = None,
    train_rows: Annotated[
        int | None, typer.Option(min=2, help="Rows each refit trains on [default: 2160]")
    ] = None,
    test_rows: Annotated[
        int | None, typer.Option(min=1, help="Rows each window forecasts [default: 720]")
    ] = None,
    step_rows: Annotated[
        int | None, typer.Option(min=1, help="Rows between window starts [default: test rows]")
    ] = None,
    fee_bps: Annotated[
        float | None, typer.Option(min=0, help="Backtest fee per position change [default: 10]")
    ] = None,
    fit_budget: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Seconds of fitting per kind after which the evaluation stops with an error "
            "(it never skips refits); 0: no budget [default: none]",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Forecast target: return or volatility; with it, the target's baselines and "
            "scores, the embargo of its horizon, and (returns) adaptive intervals "
            "[default: the next candle's return, today's report]"
        ),
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Horizon in candles (with --target)")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON on stdout")] = False,
    log_run: Annotated[
        bool,
        typer.Option(
            "--mlflow/--no-mlflow", help="Log a configured stream's evaluation to its experiment"
        ),
    ] = True,
    html: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="HTML report [default: $CANDLECAST_HOME/reports/<stream>-<time>]"
        ),
    ] = None,
) -> None:
    """Walk-forward evaluation of model kinds beside persistence, on a stream's stored history
    or a file: metrics as a table (or JSON), plots in an HTML report, progress on stderr."""
    import contextlib
    import sys

    from candlecast.data.importers import read_history
    from candlecast.data.ingestion import validated_table
    from candlecast.data.quality import usable_candles
    from candlecast.modeling import evaluate as evaluation
    from candlecast.modeling import report as reports
    from candlecast.modeling.kinds import check_training

    stdout = sys.stdout
    # Everything for people (progress, errors, the report's path) goes to stderr, so that
    # stdout carries the report alone.
    with contextlib.redirect_stdout(sys.stderr), _clean_errors():
        candles = read_history(file) if file else None
        if candles is not None and timeframe is None:
            timeframe = evaluation.infer_timeframe(candles["ts"])
        config, configured = _stream(pair, exchange or ("file" if file else None), timeframe)
        check_training(config.training, config.stream.label)
        if candles is None:
            candles = usable_candles(config, validated_table(config.stream).read())
        settings = evaluation.EvaluationSettings().with_overrides(
            train_rows=train_rows,
            test_rows=test_rows,
            step_rows=step_rows,
            fee_bps=fee_bps,
            fit_budget_s=fit_budget,
        )
        if target is not None:
            _evaluate_target(
                config,
                configured and log_run,
                candles,
                target,
                horizon,
                models,
                settings,
                file,
                html,
                stdout if as_json else None,
            )
            return
        frame = evaluation.evaluation_frame(candles, config.timeframe, config.stream.market_key)
        result = evaluation.evaluate_kinds(
            frame,
            evaluation.kind_list(models, config.training.kinds),
            config.timeframe,
            settings,
            params=config.training.params,
            on_window=lambda kind, done, total: console.print(f"{kind}: window {done}/{total}"),
        )
        info = {
            "stream": config.stream.key,
            "source": str(file or validated_table(config.stream).root),
        }
        path = html or reports.default_path(config.stream, get_settings().paths.home)
        info["html"] = str(reports.write_html(result, info, path))
        console.print(f"HTML report: {path}", soft_wrap=True, highlight=False)
        if configured and log_run:
            from candlecast.modeling import registry

            registry.configure()
            info["mlflow_run"] = reports.log_to_mlflow(result, config.stream, info, path)
            console.print(f"MLflow run: {info['mlflow_run']} ({config.stream.experiment})")
    if as_json:
        stdout.write(result.to_json(**info) + "\n")
        return
    rows = reports.summary_rows(result)  # one column per kind fits a terminal
    table = Table("", *(row[0] for row in rows), title=f"walk-forward: {config.stream.label}")
    for number, metric in enumerate(reports.SUMMARY_COLUMNS[1:], start=1):
        table.add_row(metric, *(row[number] for row in rows))
    console.print(table)


def _evaluate_target(
    config: Any,
    log_run: bool,
    candles: Any,
    name: str,
    horizon: int,
    models: str | None,
    settings: Any,
    file: Path | None,
    html: Path | None,
    json_out: Any,
) -> None:
    """``evaluate --target``: one target at one horizon, its baselines beside the kinds."""
    from candlecast.data.ingestion import validated_table
    from candlecast.modeling import target_evaluation as evaluation
    from candlecast.modeling import target_report as reports
    from candlecast.modeling.kinds import kind_names
    from candlecast.modeling.report import default_path
    from candlecast.targets import get_target

    target = get_target(name, horizon)
    if models is None:
        kinds = [k for k in config.training.kinds if k in kind_names(target.name)]
    elif models.strip() == "all":
        kinds = kind_names(target.name)
    else:
        kinds = [kind.strip() for kind in models.split(",") if kind.strip()]
    frame = evaluation.target_frame(candles, config.timeframe, config.stream.market_key, target)
    result = evaluation.evaluate_target(
        frame,
        target,
        kinds,
        config.timeframe,
        settings,
        params=config.training.params,
        on_window=lambda kind, done, total: console.print(f"{kind}: window {done}/{total}"),
    )
    info = {"stream": config.stream.key, "source": str(file or validated_table(config.stream).root)}
    path = html or default_path(config.stream, get_settings().paths.home)
    info["html"] = str(reports.write_html(result, info, path))
    console.print(f"HTML report: {path}", soft_wrap=True, highlight=False)
    if log_run:
        from candlecast.modeling import registry

        registry.configure()
        info["mlflow_run"] = reports.log_to_mlflow(result, config.stream, info, path)
        console.print(f"MLflow run: {info['mlflow_run']} ({config.stream.experiment})")
    if json_out is not None:
        json_out.write(reports.target_report_json(result, **info) + "\n")
        return
    table = Table(
        "kind",
        target.primary,
        f"{target.primary} ratio",
        "vs",
        "DM p",
        "folds won",
        title=f"walk-forward: {config.stream.label}, {target.key}",
    )
    for kind, row in result.as_dict()["kinds"].items():
        versus = row["versus"]
        opponent = "ewma" if "ewma" in versus else next(iter(versus), "")
        against = versus.get(opponent) or {}
        table.add_row(
            kind,
            _num(row.get(target.primary)),
            _num(row.get(f"{target.primary}_ratio")),
            opponent,
            _num(against.get("dm_p_value")),
            _num(against.get("folds_won")),
        )
    console.print(table)


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}"
