"""Grafana dashboards as code: one per stream (uid ``Stream.dashboard_uid``), from Prometheus, and
the prediction service's health (uid :data:`SERVICE_UID`). Every stream panel selects its stream
through the dashboard variable ``stream`` (:data:`STREAM`), which lists every configured stream
and opens on the dashboard's own: any stream's dashboard shows every stream.

Every panel queries the monitoring exporter's metrics (:mod:`candlecast.monitoring.exporter`)
through the provisioned Prometheus datasource (uid :data:`PROMETHEUS`), the table of recent
checks too, so it works with the local SQLite metrics table as with Postgres. No axis mixes two
units: each panel draws quantities of one unit (seconds, shares, counts), so Grafana's one axis
fits them all.
Each stream's dashboard links to the stream's MLflow experiment and registered model, its
Airflow DAGs and the prediction service's documentation, at the configured URLs
(``CANDLECAST_MLFLOW_UI_URL``, ``CANDLECAST_AIRFLOW_HOST``/``_PORT``,
``CANDLECAST_SERVICE_URL``; the committed files use the defaults). Promotions and retrain
requests are Grafana annotations tagged ``candlecast`` and the stream key (pushed by
``candlecast grafana sync``), shown by the dashboard's tag query. ``candlecast grafana
dashboards`` writes the files under ``deploy/grafana/dashboards/`` (one per configured stream)
that provisioning loads, and ``--check`` fails when they differ from what this module generates.
The files follow Grafana's dashboard JSON schema (vendored under ``deploy/grafana/schema/``,
checked by the tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from candlecast import urls
from candlecast.names import Stream
from candlecast.settings import REPO_ROOT, Settings, get_settings

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "candlecast-postgres"}
GRAFANA = {"type": "grafana", "uid": "-- Grafana --"}
DASHBOARDS_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
SCHEMA_VERSION = 39
SERVICE_UID = "candlecast-service-health"
SERVICE_FILE = "service-health.json"
#: The dashboard variable that selects the stream every stream panel shows.
STREAM = "$stream"
STREAM_MATCHER = f'stream="{STREAM}"'


#: A query of a panel: (PromQL, legend).
Query = tuple[str, str]


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}


def _panel(
    number: int,
    title: str,
    description: str,
    targets: list[Query],
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
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [_target(e, legend, chr(65 + i)) for i, (e, legend) in enumerate(targets)],
        **extra,
    }


def queries() -> list[tuple[str, list[Query], str, str]]:
    """(title, [query], unit, description) of every Prometheus panel, for the stream
    the dashboard's ``stream`` variable selects."""
    s = STREAM_MATCHER
    m = "candlecast_monitor"
    return [
        (
            "Drift share",
            [(f"{m}_drift_share{{{s}}}", "drifted share")],
            "percentunit",
            "Share of the champion's input features that drifted (Evidently tests).",
        ),
        (
            "Drifted feature count",
            [(f"{m}_drifted_features{{{s}}}", "drifted features")],
            "none",
            "Number of the champion's input features that drifted.",
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
            ],
            "none",
            "Below 1: the champion beats persistence on the forecasts realized in the window.",
        ),
        (
            "Realized direction and coverage",
            [
                (f"{m}_realized_directional_accuracy{{{s}}}", "directional accuracy"),
                (f"{m}_realized_majority_rate{{{s}}}", "majority direction rate"),
                (f"{m}_realized_interval_coverage{{{s}}}", "interval coverage"),
            ],
            "percentunit",
            "Directional accuracy beside always calling the commoner direction, and the share "
            "of realized returns inside the served interval.",
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
            "Feature staleness",
            [(f"{m}_feature_staleness_seconds{{{s}}}", "newest candle age")],
            "s",
            "Age of the newest validated candle at the check.",
        ),
        (
            "Forecasts in the window",
            [
                (f"{m}_forecasts_logged{{{s}}}", "forecasts logged"),
                (f"{m}_forecasts_realized{{{s}}}", "forecasts realized"),
            ],
            "none",
            "Forecasts logged in the current window, and those whose candle has closed.",
        ),
        *target_queries(),
    ]


def target_queries() -> list[tuple[str, list[Query], str, str]]:
    """The served targets' panels: volatility forecast against realized, interval coverage
    over time and the intervals' ACI level; and the shadow challengers against the champion."""
    s = STREAM_MATCHER
    m = "candlecast_monitor"
    volatility = f'{s}, target=~"volatility_.*"'
    return [
        (
            "Volatility forecast vs realized",
            [
                (f"{m}_target_newest_forecast{{{volatility}}}", "{{target}} forecast"),
                (f"{m}_target_newest_realized{{{volatility}}}", "{{target}} realized"),
            ],
            "percentunit",
            "Each volatility target's newest realized forecast and the volatility its candles "
            "realized, annualized, at each check.",
        ),
        (
            "Interval coverage over time",
            [
                (f"{m}_target_interval_coverage{{{s}}}", "{{target}} 90% (card width, window)"),
                (
                    f'{m}_target_aci_coverage{{{s}, level="0.9"}}',
                    "{{target}} 90% as served (since the champion)",
                ),
                (f"{m}_realized_interval_coverage{{{s}}}", "next candle 90% (logged)"),
            ],
            "percentunit",
            "Realized coverage of the 90% intervals per horizon: with the card's width over the "
            "window, and of the adaptive intervals as served since the champion was served. "
            "Below monitoring.min_coverage a retrain is requested.",
        ),
        (
            "ACI level in use",
            [(f"{m}_target_aci_level{{{s}}}", "{{target}} nominal {{level}}")],
            "percentunit",
            "The level adaptive conformal inference serves for each nominal level (1 - alpha): "
            "above nominal after misses, below after a run of hits.",
        ),
        (
            "Shadow challengers vs champion",
            [
                (
                    f"{m}_shadow_rmse_vs_champion{{{s}}}",
                    "shadow v{{version}} / champion v{{champions}}",
                )
            ],
            "none",
            "Each shadow challenger's realized RMSE over the champion's on the same candles "
            "(below 1: the shadow is better). One that beats the champion by the gate's test "
            "and margin is a retrain reason.",
        ),
    ]


#: The recent-checks table's columns: exporter label -> header (in this order).
CHECK_COLUMNS = {
    "as_of": "as of (UTC)",
    "champion": "champion",
    "drift_share": "drift share",
    "rmse_ratio": "RMSE / persistence",
    "decision": "decision",
    "reason": "reason",
}


def checks_table(number: int) -> dict[str, Any]:
    """The stream's recent checks with their figures and reasons, newest first, from the
    exporter's ``candlecast_monitor_recent_check`` series through Prometheus: it works
    whichever store holds the metrics table (a local SQLite file no datasource reads, or
    Postgres)."""
    hidden = ["Time", "Value", "__name__", "instance", "job", "stream"]
    return {
        "id": number,
        "type": "table",
        "title": "Recent checks",
        "description": "The stream's newest checks, their figures and decisions, newest first.",
        "datasource": PROMETHEUS,
        "gridPos": {"h": 10, "w": 24, "x": 0, "y": 100},
        "options": {
            "frameIndex": 0,
            "showHeader": True,
            "sortBy": [{"displayName": CHECK_COLUMNS["as_of"], "desc": True}],
        },
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "inspect": False}},
            "overrides": [],
        },
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": dict.fromkeys(hidden, True),
                    "indexByName": {name: i for i, name in enumerate(CHECK_COLUMNS)},
                    "renameByName": CHECK_COLUMNS,
                },
            }
        ],
        "targets": [
            {
                "refId": "A",
                "datasource": PROMETHEUS,
                "expr": f"candlecast_monitor_recent_check{{{STREAM_MATCHER}}}",
                "format": "table",
                "instant": True,
                "legendFormat": "__auto",
            }
        ],
    }


def stream_links(stream: Stream, settings: Settings | None = None) -> list[dict[str, Any]]:
    """The dashboard's links: the stream's MLflow experiment and registered model, its three
    Airflow DAGs, the prediction service's documentation (configured base URLs,
    :mod:`candlecast.urls`), and the other candlecast dashboards."""
    settings = settings or get_settings()
    pages = [
        ("MLflow experiment", urls.experiment_url(stream, settings), "Training runs"),
        ("Registered model", urls.model_url(stream, settings), "Versions and aliases"),
        *(
            (f"Airflow {dag_id}", urls.dag_url(dag_id, settings), "Runs of the DAG")
            for dag_id in stream.dag_ids
        ),
        ("Prediction service", urls.service_url(settings), "The service's API documentation"),
    ]
    found = [
        {
            "title": title,
            "type": "link",
            "url": url,
            "icon": "external link",
            "tooltip": f"{tooltip} ({stream.key})",
            "tags": [],
            "asDropdown": False,
            "targetBlank": True,
            "includeVars": False,
            "keepTime": False,
        }
        for title, url, tooltip in pages
    ]
    found.append(
        {
            "title": "candlecast dashboards",
            "type": "dashboards",
            "icon": "external link",
            "tooltip": "",
            "tags": ["candlecast"],
            "asDropdown": True,
            "targetBlank": False,
            "includeVars": False,
            "keepTime": True,
        }
    )
    return found


def _dashboard(uid: str, title: str, tags: list[str], refresh: str, span: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": tags,
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "refresh": refresh,
        "time": {"from": span, "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [],
    }


def stream_variable(stream: Stream, streams: list[Stream]) -> dict[str, Any]:
    """The ``stream`` variable: a list of the configured streams (it works before Prometheus
    has any data), ``stream`` selected, so each stream's dashboard opens on its own."""
    keys = (
        [s.key for s in streams] if stream in streams else [stream.key, *(s.key for s in streams)]
    )
    return {
        "name": "stream",
        "label": "Stream",
        "type": "custom",
        "description": "The configured stream every panel shows",
        "query": ",".join(keys),
        "current": {"selected": True, "text": stream.key, "value": stream.key},
        "options": [{"selected": key == stream.key, "text": key, "value": key} for key in keys],
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "skipUrlSync": False,
    }


def pair_dashboard(
    stream: Stream, streams: list[Stream] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """The stream's monitoring dashboard; its ``stream`` variable switches to any of
    ``streams`` (default: only this one); its links go to the stream's pages at the URLs of
    ``settings`` (default: the configured ones)."""
    panels = [
        _panel(n, title, text, targets, unit)
        for n, (title, targets, unit, text) in enumerate(queries(), start=1)
    ]
    panels.append(checks_table(len(panels) + 1))
    tags = ["candlecast", "monitoring", stream.key]
    board = _dashboard(stream.dashboard_uid, f"candlecast {stream.label}", tags, "1m", "now-7d")
    return board | {
        "annotations": {
            "list": [
                {
                    "name": "Promotions and retrains",
                    "datasource": GRAFANA,
                    "enable": True,
                    "iconColor": "orange",
                    "target": {
                        "type": "tags",
                        "tags": ["candlecast", STREAM],
                        "matchAny": False,
                        "limit": 500,
                    },
                }
            ]
        },
        "links": stream_links(stream, settings),
        "panels": panels,
        "templating": {"list": [stream_variable(stream, streams or [stream])]},
    }


def service_queries() -> list[tuple[str, list[Query], str, str]]:
    """(title, [query], unit, description) of every service-health panel: BentoML's
    request metrics and the service's own (:mod:`candlecast.serving.metrics`), job
    ``predictor`` of ``deploy/prometheus/prometheus.yml``."""
    job = 'job="predictor"'
    requests = f"bentoml_service_request_total{{{job}}}"
    return [
        (
            "Request rate",
            [(f"sum by (endpoint) (rate({requests}[5m]))", "{{endpoint}}")],
            "reqps",
            "Requests per second by endpoint (health probes and /metrics excluded by BentoML).",
        ),
        (
            "p95 latency",
            [
                (
                    "histogram_quantile(0.95, sum by (le, endpoint) (rate("
                    f"bentoml_service_request_duration_seconds_bucket{{{job}}}[5m])))",
                    "{{endpoint}}",
                ),
                (
                    "histogram_quantile(0.95, sum by (le, endpoint) (rate("
                    f"candlecast_prediction_latency_seconds_bucket{{{job}}}[5m])))",
                    "{{endpoint}} (inside the service)",
                ),
            ],
            "s",
            "95th percentile request duration by endpoint, at the HTTP layer and inside the "
            "service.",
        ),
        (
            "Error rate",
            [
                (
                    "sum by (endpoint) (rate(bentoml_service_request_total{"
                    f'{job}, http_response_code=~"5.."}}[5m])) / sum by (endpoint) '
                    f"(rate({requests}[5m]))",
                    "{{endpoint}}",
                )
            ],
            "percentunit",
            "Share of requests answered with a 5xx status, by endpoint (404 for an unknown pair "
            "is not an error; 503 for a stream with no model or features is).",
        ),
        (
            "Requests in progress",
            [(f"sum by (endpoint) (bentoml_service_request_in_progress{{{job}}})", "{{endpoint}}")],
            "short",
            "Requests being handled now, by endpoint.",
        ),
        (
            "Forecasts per stream",
            [(f"sum by (stream) (rate(candlecast_predictions_total{{{job}}}[5m]))", "{{stream}}")],
            "reqps",
            "Forecasts answered per second, by stream.",
        ),
        (
            "Served model and refreshes",
            [
                (f"candlecast_served_model_version{{{job}}}", "{{stream}} model version"),
                (
                    f"sum by (stream, outcome) (candlecast_cache_refreshes_total{{{job}}})",
                    "{{stream}} refreshes {{outcome}}",
                ),
            ],
            "none",
            "Model version each stream serves and its cache refreshes by outcome "
            "(model_rejected: a new model that failed to load).",
        ),
        (
            "Served feature age",
            [(f"candlecast_feature_age_seconds{{{job}}}", "{{stream}}")],
            "s",
            "Age of each stream's served features.",
        ),
    ]


def service_dashboard() -> dict[str, Any]:
    """The prediction service's health: request rate, latency, errors, what each stream serves."""
    panels = [
        _panel(n, title, text, targets, unit)
        for n, (title, targets, unit, text) in enumerate(service_queries(), start=1)
    ]
    board = _dashboard(
        SERVICE_UID, "candlecast service health", ["candlecast", "bentoml"], "30s", "now-6h"
    )
    return board | {"panels": panels}


def dashboard_file(stream: Stream, folder: Path = DASHBOARDS_DIR) -> Path:
    return folder / f"{stream.dashboard_uid}.json"


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def generated(
    streams: list[Stream], folder: Path = DASHBOARDS_DIR, settings: Settings | None = None
) -> dict[str, tuple[Path, str]]:
    """Every dashboard file this module makes: name (stream key, or ``service-health``) to
    (path, rendered JSON)."""
    files = {"service-health": (folder / SERVICE_FILE, render(service_dashboard()))}
    for stream in streams:
        board = pair_dashboard(stream, streams, settings)
        files[stream.key] = (dashboard_file(stream, folder), render(board))
    return files


def write_dashboards(streams: list[Stream], folder: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write the service's and each stream's dashboard file; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in generated(streams, folder).values():
        path.write_text(text)
    return [path for path, _ in generated(streams, folder).values()]


def stale_dashboards(streams: list[Stream], folder: Path = DASHBOARDS_DIR) -> list[str]:
    """Dashboards (stream keys, ``service-health``) whose file is missing or differs from the
    generated one."""
    return [
        name
        for name, (path, text) in generated(streams, folder).items()
        if not path.exists() or path.read_text() != text
    ]
