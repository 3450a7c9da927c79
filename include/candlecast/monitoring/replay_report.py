"""What a replay found: realized skill per policy and champion, the timeline of decisions,
whether retraining on triggers paid off (a Diebold-Mariano test on per-candle squared-error
loss differences), and one self-contained HTML page with the plots (inline SVG).

The figures are the gate's and monitoring's: RMSE and MAE ratios to persistence, directional
accuracy against the majority rate (:func:`candlecast.evaluation.metrics.directional_accuracy`)
and the realized coverage of the champions' 90% split-conformal intervals.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd

from candlecast.evaluation.metrics import directional_accuracy, interval_coverage
from candlecast.evaluation.significance import diebold_mariano_losses
from candlecast.monitoring.replay import RATE_LIMITED, PolicyRun, Replay

#: Significance level of the policy comparison (the gate's default).
ALPHA = 0.05
#: Candles in the rolling windows of the HTML plots (a week of hourly candles).
ROLLING = 168


def realized(target: np.ndarray, predicted: np.ndarray, half_width: np.ndarray) -> dict[str, Any]:
    """Realized figures of forecasts against their targets (None where undefined)."""
    if not len(target):
        return {"forecasts": 0}
    base_rmse = float(np.sqrt(np.mean(target**2)))
    base_mae = float(np.mean(np.abs(target)))
    errors = predicted - target
    direction = directional_accuracy(target, predicted)
    known = ~np.isnan(half_width)
    coverage = interval_coverage(
        target[known], predicted[known] - half_width[known], predicted[known] + half_width[known]
    )
    return {
        "forecasts": len(target),
        "rmse_ratio": _number(
            float(np.sqrt(np.mean(errors**2))) / base_rmse if base_rmse else None
        ),
        "mae_ratio": _number(float(np.mean(np.abs(errors))) / base_mae if base_mae else None),
        "directional_accuracy": _number(direction.accuracy),
        "majority_rate": _number(direction.majority_rate),
        "coverage": _number(coverage.rate),
        "squared_loss": float(np.mean(errors**2)),
    }


def policy_summary(replay: Replay, run: PolicyRun) -> dict[str, Any]:
    """One policy's realized figures overall and per champion, retrains and compute."""
    target = replay.history.target[replay.rows]
    champions = []
    for index, champion in enumerate(run.champions):
        mine = run.champion == index
        champions.append(
            {
                "since": _iso(champion.since),
                "kind": champion.kind,
                "window": [_iso(t) for t in champion.window],
                "half_width": champion.half_width,
                "realized": realized(target[mine], run.predicted[mine], run.half_width[mine]),
            }
        )
    return {
        "realized": realized(target, run.predicted, run.half_width),
        "retrains": run.retrains,
        "rate_limited": sum(step.outcome == RATE_LIMITED for step in run.steps),
        "triggered_retrains": sum(step.triggered for step in run.steps),
        "champions": champions,
        "compute_s": round(run.compute_s, 3),
    }


def compare_runs(replay: Replay, a: PolicyRun, b: PolicyRun) -> dict[str, Any]:
    """Does policy ``a`` have lower expected squared-error loss than ``b`` on the same candles?

    ``p_value`` is one-sided for "a is better", ``p_value_worse`` for "a is worse".
    """
    target = replay.history.target[replay.rows]
    loss_a, loss_b = (a.predicted - target) ** 2, (b.predicted - target) ** 2
    test = diebold_mariano_losses(loss_a, loss_b, name="squared")
    mean_b = float(loss_b.mean())
    better, worse = test.p_value < ALPHA, 1 - test.p_value < ALPHA
    paid = "paid off" if better else "did worse" if worse else "made no significant difference"
    return {
        "policy": a.name,
        "against": b.name,
        "mean_loss_difference": test.mean_difference,
        "relative_loss_difference": test.mean_difference / mean_b if mean_b else None,
        "statistic": _number(test.statistic),
        "p_value": _number(test.p_value),
        "p_value_worse": _number(1 - test.p_value),
        "forecasts": test.count,
        "identical": bool(np.array_equal(a.predicted, b.predicted)),
        "triggered_retrains": sum(step.triggered for step in a.steps),
        "verdict": paid,
    }


def report(replay: Replay, stream: str) -> dict[str, Any]:
    """The replay as JSON-ready data: ``policies``, ``timeline`` and ``comparison``."""
    runs = replay.runs
    comparison: dict[str, Any] = {}
    for a, b in (("triggers", "cadence"), ("cadence", "never"), ("triggers", "never")):
        if a in runs and b in runs:
            comparison[f"{a}_vs_{b}"] = compare_runs(replay, runs[a], runs[b])
    comparison["verdict"] = verdict(comparison)
    return {
        "stream": stream,
        "start": _iso(replay.start),
        "end": _iso(replay.end),
        "forecasts": len(replay.rows),
        "policies": {name: policy_summary(replay, run) for name, run in runs.items()},
        "timeline": [
            {
                "time": _iso(step.time),
                "policy": step.policy,
                "reason": step.reason,
                "outcome": step.outcome,
                "champion_kind": step.kind,
                "changed_champion": step.changed,
                "gate_reason": step.gate_reason,
            }
            for run in runs.values()
            for step in run.steps
        ],
        "comparison": comparison,
    }


def verdict(comparison: dict[str, Any]) -> str:
    """The comparison in plain words."""
    found = comparison.get("triggers_vs_cadence")
    if found is None:
        return "triggers were not compared with the cadence (run both policies)"
    if found["identical"]:
        fired = found["triggered_retrains"]
        why = (
            "they never fired before the cadence"
            if not fired
            else f"{fired} trigger retrains, none changed the champion's point forecasts"
        )
        return (
            f"triggers never changed a point forecast ({why}): no difference in loss on this "
            "stream (only the intervals, and so coverage, can differ)"
        )
    change = found["relative_loss_difference"] or 0.0
    return (
        f"drift-triggered retraining {found['verdict']} against the cadence alone: squared-error "
        f"loss {change:+.2%} (Diebold-Mariano p={found['p_value']:.3g} that triggers are "
        f"better, p={found['p_value_worse']:.3g} that they are worse, "
        f"{found['forecasts']} forecasts, alpha {ALPHA})"
    )


def html_page(replay: Replay, payload: dict[str, Any]) -> str:
    """One self-contained page: champions and retrains over time, rolling realized RMSE ratio
    and coverage per policy, and the figures."""
    plots = "".join(_svg(figure) for figure in _figures(replay))
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{p['realized'].get('forecasts')}</td>"
        f"<td>{_fmt(p['realized'].get('rmse_ratio'))}</td>"
        f"<td>{_fmt(p['realized'].get('coverage'))}</td><td>{p['retrains']}</td>"
        f"<td>{p['compute_s']:.1f}</td></tr>"
        for name, p in payload["policies"].items()
    )
    timeline = "".join(
        f"<tr><td>{t['time']}</td><td>{t['policy']}</td><td>{html.escape(t['reason'])}</td>"
        f"<td>{t['outcome']}</td><td>{t['champion_kind']}</td></tr>"
        for t in payload["timeline"]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>candlecast replay {html.escape(payload['stream'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;font-size:13px}</style></head><body>"
        f"<h1>Replay of {html.escape(payload['stream'])}: {payload['start']} .. "
        f"{payload['end']}</h1><p>{html.escape(payload['comparison']['verdict'])}</p>"
        "<table><tr><th>policy</th><th>forecasts</th><th>RMSE ratio</th><th>coverage</th>"
        f"<th>retrains</th><th>compute s</th></tr>{rows}</table>{plots}"
        "<h2>Timeline</h2><table><tr><th>time</th><th>policy</th><th>reason</th>"
        f"<th>outcome</th><th>champion</th></tr>{timeline}</table></body></html>"
    )


def _figures(replay: Replay) -> list[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = pd.to_datetime(replay.history.close_ms[replay.rows], unit="ms", utc=True)
    target = replay.history.target[replay.rows]
    skill, cover = plt.subplots(figsize=(10, 3)), plt.subplots(figsize=(10, 3))
    timeline = plt.subplots(figsize=(10, 0.6 + 0.5 * len(replay.runs)))
    for level, (name, run) in enumerate(replay.runs.items()):
        errors = pd.Series((run.predicted - target) ** 2)
        base = pd.Series(target**2).rolling(ROLLING).mean()
        ratio = np.sqrt(errors.rolling(ROLLING).mean() / base)
        skill[1].plot(times, ratio, label=name, linewidth=1)
        inside = pd.Series(np.abs(run.predicted - target) <= run.half_width, dtype=float)
        cover[1].plot(times, inside.rolling(ROLLING).mean(), label=name, linewidth=1)
        for step in run.steps:
            colour = "tab:green" if step.changed else "tab:grey"
            if step.outcome == RATE_LIMITED:
                colour = "tab:red"
            when = pd.Timestamp(step.time, unit="ms", tz="UTC")
            timeline[1].scatter([when], [level], color=colour, s=12)
    skill[1].axhline(1.0, color="black", linewidth=0.5)
    skill[1].set_title(f"realized RMSE / persistence's, rolling {ROLLING} candles")
    cover[1].axhline(0.9, color="black", linewidth=0.5)
    cover[1].set_title(f"90% interval coverage, rolling {ROLLING} candles")
    timeline[1].set_yticks(range(len(replay.runs)), list(replay.runs))
    timeline[1].set_title("decisions (green: champion changed, grey: kept, red: rate limited)")
    for figure in (skill, cover):
        figure[1].legend(loc="upper left")
    return [timeline[0], skill[0], cover[0]]


def _svg(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
