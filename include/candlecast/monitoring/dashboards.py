"""Grafana dashboards as code: one per stream (uid ``Stream.dashboard_uid``), from Prometheus.

Every panel queries the monitoring exporter's metrics (:mod:`candlecast.monitoring.exporter`)
through the provisioned Prometheus datasource (uid :data:`PROMETHEUS`), except the table of
recent checks, which reads the metrics table through the Postgres datasource (uid
:data:`POSTGRES`). Promotions and retrain requests are Grafana annotations tagged
``candlecast`` and the stream key (pushed by ``candlecast grafana sync``), shown by the
dashboard's tag query. ``candlecast grafana dashboards`` writes the files under
``deploy/grafana/dashboards/`` (one per configured stream) that provisioning loads, and
``--check`` fails when they differ from what this module generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from candlecast.names import Stream
from candlecast.settings import REPO_ROOT

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "candlecast-postgres"}
GRAFANA = {"type": "grafana", "uid": "-- Grafana --"}
DASHBOARDS_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
SCHEMA_VERSION = 39


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}


def _panel(
    number: int,
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    unit: str = "none",
    **extra: Any,
) -> dict[str, Any]:
    x, y = (number - 1) % 2 * 12, (number - 1) // 2 * 8
    return {
        "id": number,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
        "targets": [_target(e, legend, chr(65 + i)) for i, (e, legend) in enumerate(targets)],
        **extra,
    }


def queries(stream: Stream) -> list[tuple[str, list[tuple[str, str]], str, str]]:
    """(title, [(PromQL, legend)], unit, description) of every Prometheus panel."""
    s = f'stream="{stream.key}"'
    m = "candlecast_monitor"
    return [
        (
            "Drift share",
            [
                (f"{m}_drift_share{{{s}}}", "drifted share"),
                (f"{m}_drifted_features{{{s}}}", "drifted features"),
            ],
            "none",
            "Share and number of the champion's input features that drifted (Evidently tests).",
        ),
        (
            "Drifted features",
            [(f'{m}_feature_drift_score{{{s}, drifted="true"}}', "{{feature}} ({{method}})")],
            "none",
            "Drift score of each feature that drifted at the newest check.",
        ),
        (
            "Forecast vs realized",
            [
                (f"{m}_realized_forecast_return{{{s}}}", "forecast"),
                (f"{m}_realized_forecast_lower{{{s}}}", "interval low"),
                (f"{m}_realized_forecast_upper{{{s}}}", "interval high"),
                (f"{m}_realized_return{{{s}}}", "realized"),
            ],
            "percentunit",
            "The newest forecast whose candle has closed, its 90% interval and the realized "
            "log return of that candle.",
        ),
        (
            "Realized skill vs persistence",
            [
                (f"{m}_realized_rmse_ratio{{{s}}}", "RMSE / persistence"),
                (f"{m}_realized_mae_ratio{{{s}}}", "MAE / persistence"),
                (f"{m}_realized_directional_accuracy{{{s}}}", "directional accuracy"),
                (f"{m}_realized_majority_rate{{{s}}}", "majority direction rate"),
                (f"{m}_realized_interval_coverage{{{s}}}", "interval coverage"),
            ],
            "none",
            "Below 1: the champion beats persistence on the forecasts realized in the window.",
        ),
        (
            "Model versions",
            [
                (f"{m}_champion_version{{{s}}}", "champion version"),
                (f"{m}_retrain_requests_total{{{s}}}", "retrain requests"),
            ],
            "none",
            "Champion version at each check; promotions and retrains are annotations.",
        ),
        (
            "Feature staleness and forecasts",
            [
                (f"{m}_feature_staleness_seconds{{{s}}}", "newest candle age (s)"),
                (f"{m}_forecasts_logged{{{s}}}", "forecasts logged"),
                (f"{m}_forecasts_realized{{{s}}}", "forecasts realized"),
            ],
            "none",
            "Age of the newest validated candle at the check; forecasts in the window.",
        ),
    ]


def checks_table(stream: Stream, number: int) -> dict[str, Any]:
    """Recent checks with their reasons, from the metrics table (Postgres)."""
    sql = (
        "SELECT to_timestamp(checked_at / 1000.0) AS time, champion_version, drift_share, "
        "rmse_ratio, retrain, rate_limited, reason, report_path FROM monitoring_checks "
        f"WHERE stream = '{stream.key}' ORDER BY checked_at DESC LIMIT 50"
    )
    return {
        "id": number,
        "type": "table",
        "title": "Recent checks",
        "description": "Every check's figures and decision, newest first.",
        "datasource": POSTGRES,
        "gridPos": {"h": 10, "w": 24, "x": 0, "y": 100},
        "targets": [{"refId": "A", "datasource": POSTGRES, "format": "table", "rawSql": sql}],
    }


def pair_dashboard(stream: Stream) -> dict[str, Any]:
    """The stream's monitoring dashboard."""
    panels = [
        _panel(n, title, text, targets, unit)
        for n, (title, targets, unit, text) in enumerate(queries(stream), start=1)
    ]
    panels.append(checks_table(stream, len(panels) + 1))
    return {
        "uid": stream.dashboard_uid,
        "title": f"candlecast {stream.label}",
        "tags": ["candlecast", "monitoring", stream.key],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "annotations": {
            "list": [
                {
                    "name": "Promotions and retrains",
                    "datasource": GRAFANA,
                    "enable": True,
                    "iconColor": "orange",
                    "target": {
                        "type": "tags",
                        "tags": ["candlecast", stream.key],
                        "matchAny": False,
                        "limit": 500,
                    },
                }
            ]
        },
        "panels": panels,
    }


def dashboard_file(stream: Stream, folder: Path = DASHBOARDS_DIR) -> Path:
    return folder / f"{stream.dashboard_uid}.json"


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def write_dashboards(streams: list[Stream], folder: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write each stream's dashboard file; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stream in streams:
        path = dashboard_file(stream, folder)
        path.write_text(render(pair_dashboard(stream)))
        written.append(path)
    return written


def stale_dashboards(streams: list[Stream], folder: Path = DASHBOARDS_DIR) -> list[str]:
    """Streams whose dashboard file is missing or differs from the generated one."""
    return [
        stream.key
        for stream in streams
        if not dashboard_file(stream, folder).exists()
        or dashboard_file(stream, folder).read_text() != render(pair_dashboard(stream))
    ]
