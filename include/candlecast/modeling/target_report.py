"""A target evaluation (:mod:`.target_evaluation`) in plain JSON types and as an HTML page.

The JSON keeps the shape of ``candlecast evaluate``'s (a top-level ``kinds`` mapping each kind
to its scores) and adds ``target`` and ``horizon``. Volatility kinds carry ``qlike`` and
``qlike_ratio`` (to persistence), learned kinds also ``qlike_vs_ewma`` and ``dm_p_vs_ewma``;
return kinds carry ``interval_coverage`` (the adaptive interval at 90%: ``rate``,
``by_volatility_tercile``, ``rolling_30d_min``, ``blocks_below_80``, ``winkler``; other levels
under ``levels``, today's fixed-width interval under ``fixed_width``).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from candlecast.evaluation.intervals import IntervalScores
from candlecast.modeling.report import _plain
from candlecast.modeling.target_evaluation import KindResult, TargetReport

HEADLINE_LEVEL = 0.9


def target_report_dict(report: TargetReport) -> dict[str, Any]:
    target = report.target
    return _plain(
        {
            "target": target.name,
            "horizon": target.horizon,
            "description": target.description,
            "timeframe": report.timeframe,
            "embargo_rows": target.embargo,
            "settings": dataclasses.asdict(report.settings),
            "rows": {
                "frame": report.frame_rows,
                "usable": report.usable_rows,
                "scored": len(report.realized),
                "first": report.times[0].isoformat(),
                "last": report.times[-1].isoformat(),
            },
            "windows": len(report.folds),
            "kinds": {name: kind_dict(kind, report) for name, kind in report.kinds.items()},
        }
    )


def target_report_json(report: TargetReport, **extra: Any) -> str:
    return json.dumps({**_plain(extra), **target_report_dict(report)}, indent=2, allow_nan=False)


def kind_dict(kind: KindResult, report: TargetReport) -> dict[str, Any]:
    target = report.target
    out: dict[str, Any] = {"baseline": kind.baseline, "predictions": len(kind.predicted)}
    out |= kind.scores
    reference = target.baselines[0]
    out[f"{target.primary}_ratio"] = 1.0 if kind.kind == reference else kind.versus[reference].ratio
    if target.name == "return" and kind.kind != reference:
        out["rmse_ratio"] = kind.scores["rmse"] / report.kinds[reference].scores["rmse"]
        out["mae_ratio"] = kind.scores["mae"] / report.kinds[reference].scores["mae"]
    elif target.name == "return":
        out["rmse_ratio"] = out["mae_ratio"] = 1.0
    if target.name == "volatility" and not kind.baseline:
        out["qlike_vs_ewma"] = kind.versus["ewma"].ratio
        out["dm_p_vs_ewma"] = kind.versus["ewma"].dm_p_value
    out["versus"] = {name: dataclasses.asdict(v) for name, v in kind.versus.items()}
    if kind.intervals:
        headline = kind.intervals.get(HEADLINE_LEVEL) or next(iter(kind.intervals.values()))
        out["interval_coverage"] = {
            **_interval(headline),
            "method": (
                "normalized split conformal (fitted volatility-scaled sigma) with adaptive "
                "conformal inference"
            ),
            "aci_alpha_final": kind.aci_alpha.get(headline.level),
            "levels": {f"{level:g}": _interval(s) for level, s in kind.intervals.items()},
            "fixed_width": _interval(kind.fixed_width) if kind.fixed_width else None,
        }
    return out


def _interval(scores: IntervalScores) -> dict[str, Any]:
    return dataclasses.asdict(scores) | {
        "by_volatility_tercile": list(scores.by_volatility_tercile)
    }


def write_html(report: TargetReport, info: dict[str, Any], path: Path) -> Path:
    """A page with the scores and a plot: forecast against realized volatility, or the
    interval bands of the best return kind over the realized returns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(11, 4))
    times = report.times
    target = report.target
    if target.name == "volatility":
        axes.plot(times, np.sqrt(report.realized), lw=0.4, color="grey", label="realized sigma")
        for name, kind in report.kinds.items():
            axes.plot(times, np.sqrt(kind.predicted), lw=0.7, label=f"{name} forecast")
        axes.set(yscale="log", ylabel=f"{target.horizon}-candle sigma")
    else:
        axes.plot(times, report.realized, lw=0.4, color="grey", label="realized return")
        name, kind = next((n, k) for n, k in report.kinds.items() if n == target.baselines[0])
        axes.plot(times, kind.predicted, lw=0.7, label=f"{name} forecast")
        axes.set(ylabel=f"{target.horizon}-candle log return")
    axes.legend(loc="upper left", fontsize=7)
    axes.set_title(f"{target.key}: walk-forward out-of-sample forecasts")
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    image = base64.b64encode(buffer.getvalue()).decode()
    body = html.escape(target_report_json(report, **info))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{target.key}</title></head>"
        f"<body><h1>{html.escape(info.get('stream', ''))}: {target.key}</h1>"
        f"<img src='data:image/png;base64,{image}' alt='forecasts'><pre>{body}</pre>"
        "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def log_to_mlflow(report: TargetReport, stream: Any, info: dict[str, Any], html_path: Path) -> str:
    """Record a target evaluation as a run of the stream's experiment: per kind its primary
    loss and ratio (``<target key>.<kind>.<score>``), the JSON and the HTML page."""
    from datetime import UTC, datetime

    from candlecast.modeling import mlflow_keys as keys
    from candlecast.modeling import registry

    key = report.target.key
    with registry.start_run(
        experiment_id=registry.experiment_id(stream),
        run_name=f"evaluate-{key}-{datetime.now(UTC):%Y%m%dT%H%M}",
        tags={
            **stream.run_tags,
            keys.RUN_ROLE: "evaluation",
            keys.TARGET: report.target.name,
            keys.HORIZON: str(report.target.horizon),
            keys.SOURCE: str(info.get("source")),
        },
    ) as run:
        for name, row in target_report_dict(report)["kinds"].items():
            primary = report.target.primary
            values = {
                f"{key}.{name}.{primary}": row.get(primary),
                f"{key}.{name}.{primary}_ratio": row.get(f"{primary}_ratio"),
            }
            coverage = row.get("interval_coverage")
            if coverage:
                values[f"{key}.{name}.coverage_90"] = coverage["rate"]
                values[f"{key}.{name}.winkler_90"] = coverage["winkler"]
            registry.log_metrics({k: float(v) for k, v in values.items() if v is not None})
        registry.log_dict(target_report_dict(report), f"evaluation/{key}.json")
        registry.log_artifact(str(html_path), artifact_path="evaluation")
    return str(run.info.run_id)
