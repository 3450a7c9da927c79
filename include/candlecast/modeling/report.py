"""An :class:`~.evaluate.EvaluationReport` for people and programs: plain JSON, a summary
table, and one self-contained HTML page (figures embedded as base64 PNG, no network).

The figures: forecast against realised return per kind, equity curves of each kind's
long/flat strategy beside buy-and-hold, and calibration (interval coverage against its
nominal level; mean realised return per decile of the forecast).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from candlecast.evaluation.backtest import BacktestResult
    from candlecast.modeling.evaluation_results import EvaluationReport, KindEvaluation
    from candlecast.names import Stream

#: What each test in the JSON is, for its readers.
TESTS = {
    "diebold_mariano": "evaluation.significance.diebold_mariano: kind vs persistence, squared "
    "loss, horizon 1, HLN-corrected; p one-sided for 'the kind has the lower loss'",
    "fold_loss_test": "evaluation.significance.windowed_loss_test: one-sided t-test of the "
    "per-window mean squared-loss differences vs persistence, one window per forecast window",
    "bootstrap_rmse_ratio": "evaluation.significance.block_bootstrap_ratio: moving-block "
    "bootstrap interval of RMSE(kind) / RMSE(persistence)",
    "interval_coverage": "split conformal: each window's half-width from the kind's earlier "
    "windows' residuals (the first window's from a calibration tail of its training rows)",
}
SUMMARY_COLUMNS = (
    "kind", "windows (refits)", "predictions", "RMSE", "RMSE / pers.", "MAE / pers.",
    "direction [CI]", "majority", "DM p", "boot RMSE ratio [CI]", "coverage", "return",
    "Sharpe", "max DD", "turnover",
)  # fmt: skip
_BACKTEST_KEYS = ("total_return", "sharpe", "max_drawdown", "turnover", "trades", "exposure")
_SCATTER_POINTS = 4000


def report_dict(report: EvaluationReport) -> dict[str, Any]:
    """The report in plain JSON types (non-finite numbers as None, arrays left out)."""
    return _plain(
        {
            "timeframe": report.timeframe,
            "settings": {**dataclasses.asdict(report.settings), "tests": TESTS},
            "rows": {
                "frame": report.frame_rows,
                "usable": report.usable_rows,
                "scored": len(report.target),
                "first": report.times[0].isoformat(),
                "last": report.times[-1].isoformat(),
            },
            "folds": [
                {k: v.isoformat() if isinstance(v, pd.Timestamp) else v for k, v in _items(f)}
                for f in report.folds
            ],
            "buy_and_hold": backtest_summary(report.buy_and_hold),
            "kinds": {name: kind_dict(kind) for name, kind in report.kinds.items()},
        }
    )


def report_json(report: EvaluationReport, **extra: Any) -> str:
    """:func:`report_dict` as strict JSON, with ``extra`` keys first."""
    return json.dumps({**_plain(extra), **report_dict(report)}, indent=2, allow_nan=False)


def kind_dict(kind: KindEvaluation) -> dict[str, Any]:
    """One kind's counts and metrics in plain JSON types."""
    test = kind.fold_loss_test
    return _plain(
        {
            "window": kind.window,
            "windows": kind.windows,
            "predictions": kind.predictions,
            "refits": kind.refits,
            "refit_windows": list(kind.refit_windows),
            "fit_seconds": round(kind.fit_seconds, 2),
            "rmse": kind.rmse,
            "mae": kind.mae,
            "rmse_ratio": kind.ratios.rmse,
            "mae_ratio": kind.ratios.mae,
            "directional_accuracy": dataclasses.asdict(kind.direction),
            "interval_coverage": dataclasses.asdict(kind.coverage),
            "diebold_mariano": dataclasses.asdict(kind.diebold_mariano),
            "fold_loss_test": dataclasses.asdict(test) if test else None,
            "bootstrap_rmse_ratio": dataclasses.asdict(kind.bootstrap),
            "backtest": backtest_summary(kind.backtest),
        }
    )


def backtest_summary(result: BacktestResult) -> dict[str, Any]:
    """A backtest's scalar results (the equity curve left out)."""
    return _plain({key: getattr(result, key) for key in _BACKTEST_KEYS})


def summary_rows(report: EvaluationReport) -> list[list[str]]:
    """One row per kind (and buy-and-hold) under :data:`SUMMARY_COLUMNS`, as text."""
    rows = []
    for name, kind in report.kinds.items():
        ci, boot = kind.direction.interval, kind.bootstrap
        rows.append(
            [
                name,
                f"{kind.windows} ({kind.refits})",
                str(kind.predictions),
                f"{kind.rmse:.5f}",
                f"{kind.ratios.rmse:.4f}",
                f"{kind.ratios.mae:.4f}",
                f"{_pct(kind.direction.accuracy)} [{_pct(ci.low)}, {_pct(ci.high)}]",
                _pct(kind.direction.majority_rate),
                f"{kind.diebold_mariano.p_value:.3f}",
                f"{boot.ratio:.4f} [{boot.interval.low:.4f}, {boot.interval.high:.4f}]",
                _pct(kind.coverage.rate),
                *_backtest_cells(kind.backtest),
            ]
        )
    rows.append(["buy-and-hold", *[""] * 10, *_backtest_cells(report.buy_and_hold)])
    return rows


def default_path(stream: Stream, home: Path, now: datetime | None = None) -> Path:
    """``<home>/reports/<stream key>-<UTC time>.html``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return home / "reports" / f"{stream.key}-{stamp}.html"


def write_html(report: EvaluationReport, frame_info: Mapping[str, Any], path: Path) -> Path:
    """Write the report as one self-contained HTML page at ``path``; returns ``path``.

    ``frame_info`` (the stream, the data's source) is shown as given.
    """
    figures = {
        "Forecast vs realised": _forecast_figure(report),
        "Equity: long/flat after fees vs buy-and-hold": _equity_figure(report),
        "Calibration": _calibration_figure(report),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_page(report, frame_info, figures), encoding="utf-8")
    return path


def _page(report: EvaluationReport, info: Mapping[str, Any], figures: dict[str, str]) -> str:
    title = html.escape(str(info.get("stream", "evaluation")))
    facts = {**info, "timeframe": report.timeframe, "scored rows": len(report.target)}
    facts |= {"from": report.times[0].isoformat(), "to": report.times[-1].isoformat()}
    settings = dataclasses.asdict(report.settings)
    sections = "".join(
        f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{png}">'
        for name, png in figures.items()
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}img{max-width:100%}"
        f"</style></head><body><h1>Walk-forward evaluation: {title}</h1>"
        f"{_table(['', ''], [[k, str(v)] for k, v in facts.items()])}"
        f"<h2>Metrics</h2>{_table(list(SUMMARY_COLUMNS), summary_rows(report))}"
        f"{sections}<h2>Settings</h2>"
        f"{_table(['', ''], [[k, str(v)] for k, v in settings.items()])}"
        f"<p>{'<br>'.join(html.escape(f'{k}: {v}') for k, v in TESTS.items())}</p>"
        "</body></html>"
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _forecast_figure(report: EvaluationReport) -> str:
    """Realised against forecast return, one panel per kind (a regular sample of rows)."""
    columns = min(3, len(report.kinds))
    lines = math.ceil(len(report.kinds) / columns)
    figure = _figure(4.2 * columns, 3.6 * lines)
    every = max(1, len(report.target) // _SCATTER_POINTS)
    for number, (name, kind) in enumerate(report.kinds.items(), start=1):
        axes = figure.add_subplot(lines, columns, number)
        axes.scatter(kind.predicted[::every], report.target[::every], s=3, alpha=0.3)
        axes.axhline(0, color="grey", lw=0.5)
        axes.axvline(0, color="grey", lw=0.5)
        axes.set(title=name, xlabel="forecast log return", ylabel="realised log return")
        axes.ticklabel_format(style="sci", scilimits=(-2, 2))
    return _png(figure)


def _equity_figure(report: EvaluationReport) -> str:
    figure = _figure(10, 4.5)
    axes = figure.add_subplot()
    times = report.times.tz_convert(None)
    for name, kind in report.kinds.items():
        axes.plot(times, kind.backtest.equity, lw=1, label=name)
    axes.plot(times, report.buy_and_hold.equity, "k--", lw=1, label="buy-and-hold")
    axes.set(ylabel="equity (starts at 1)")
    axes.legend(fontsize=8)
    return _png(figure)


def _calibration_figure(report: EvaluationReport) -> str:
    """Coverage per kind against the nominal level; realised vs forecast by forecast decile."""
    figure = _figure(11, 4.2)
    bars, deciles = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    names = list(report.kinds)
    rates = [kind.coverage.rate for kind in report.kinds.values()]
    bars.bar_label(bars.bar(names, rates), labels=[_pct(rate) for rate in rates], fontsize=8)
    bars.axhline(report.settings.coverage, color="red", lw=1, label="nominal")
    bars.set(ylim=(0, 1), ylabel="interval coverage", title="prediction intervals")
    bars.tick_params(axis="x", labelrotation=30)
    bars.legend(fontsize=8)
    for name, kind in report.kinds.items():
        binned = _deciles(kind.predicted, report.target)
        if binned is not None:
            deciles.plot(binned.index, binned.to_numpy(), marker="o", lw=1, label=name)
    deciles.axline((0, 0), slope=1, color="grey", lw=0.5, label="ideal")
    deciles.set(xlabel="mean forecast", ylabel="mean realised", title="forecast deciles")
    deciles.ticklabel_format(style="sci", scilimits=(-2, 2))
    deciles.legend(fontsize=8)
    return _png(figure)


def _deciles(predicted: np.ndarray, target: np.ndarray) -> pd.Series | None:
    """Mean realised return by decile of the forecast, indexed by the decile's mean forecast;
    None for a forecast with fewer than two distinct values."""
    if len(np.unique(predicted)) < 2:
        return None
    bins = pd.qcut(predicted, 10, labels=False, duplicates="drop")
    frame = pd.DataFrame({"bin": bins, "predicted": predicted, "target": target})
    means = frame.groupby("bin")[["predicted", "target"]].mean()
    return means.set_index("predicted")["target"]


def _figure(width: float, height: float) -> Figure:
    # A bare Figure draws with the Agg canvas and leaves pyplot's global state alone.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _backtest_cells(result: BacktestResult) -> list[str]:
    return [
        _pct(result.total_return),
        f"{result.sharpe:.2f}",
        _pct(result.max_drawdown),
        str(result.turnover),
    ]


def _pct(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "-"


def _items(instance: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(instance, f.name)) for f in dataclasses.fields(instance)]


def _plain(value: Any) -> Any:
    """``value`` in plain JSON types: numpy scalars as Python ones, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def log_to_mlflow(
    report: EvaluationReport, stream: Stream, info: Mapping[str, Any], html_path: Path
) -> str:
    """Record an evaluation as a run of the stream's experiment (so it sits beside the
    training runs in the MLflow UI): per-kind metrics, the JSON and the HTML report with its
    plots. Returns the run id. The tracking store must be configured by the caller."""
    from candlecast.modeling import mlflow_keys as keys
    from candlecast.modeling import registry

    with registry.start_run(
        experiment_id=registry.experiment_id(stream),
        run_name=f"evaluate-{datetime.now(UTC):%Y%m%dT%H%M}",
        tags={**stream.run_tags, keys.RUN_ROLE: "evaluation", keys.SOURCE: str(info.get("source"))},
    ) as run:
        for name, kind in report.kinds.items():
            registry.log_metrics(
                {
                    f"{name}.rmse_ratio": kind.ratios.rmse,
                    f"{name}.mae_ratio": kind.ratios.mae,
                    f"{name}.directional_accuracy": kind.direction.accuracy,
                    f"{name}.coverage": kind.coverage.rate,
                    f"{name}.backtest_return": kind.backtest.total_return,
                }
            )
        registry.log_dict(report_dict(report), keys.EVALUATION_REPORT_ARTIFACT)
        registry.log_artifact(str(html_path), artifact_path=keys.EVALUATION_ARTIFACT_DIR)
    return str(run.info.run_id)
