"""Dashboards as code: the files are what the module generates, and every panel references a
provisioned datasource and metrics (or columns) that exist."""

import json
import re

import yaml

from candlecast.config import load_pairs
from candlecast.monitoring import dashboards, grafana
from candlecast.monitoring.exporter import MonitoringCollector
from candlecast.monitoring.store import MetricsStore
from candlecast.names import Stream
from tests.helpers import REPO

PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"


def exported_names(tmp_path) -> set[str]:
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    names = set()
    for family in MonitoringCollector(store).collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_dashboard_files_are_generated_for_every_configured_stream():
    streams = load_pairs().streams
    assert dashboards.stale_dashboards(streams) == []
    for stream in streams:
        found = json.loads(dashboards.dashboard_file(stream).read_text())
        assert found["uid"] == stream.dashboard_uid and len(found["uid"]) <= 40


def test_every_panel_references_a_provisioned_datasource_and_existing_metrics(tmp_path):
    sources = {s["uid"]: s["type"] for s in grafana.datasources(PROVISIONING / "datasources")}
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    metrics = exported_names(tmp_path)
    for stream in load_pairs().streams:
        board = json.loads(dashboards.dashboard_file(stream).read_text())
        assert board["annotations"]["list"][0]["target"]["tags"] == ["candlecast", "$stream"]
        for panel in board["panels"]:
            for target in [panel, *panel["targets"]]:
                assert sources[target["datasource"]["uid"]] == target["datasource"]["type"]
            # every panel reads Prometheus: the recent checks too, so they show whichever
            # store holds the metrics table (a local SQLite file as well as Postgres)
            assert panel["datasource"] == dashboards.PROMETHEUS, panel["title"]
            for target in panel["targets"]:
                used = set(re.findall(r"\bcandlecast_monitor_\w+", target["expr"]))
                assert used and used <= metrics, (panel["title"], used - metrics)
                assert 'stream="$stream"' in target["expr"]


def test_each_stream_dashboard_shows_its_targets_volatility_coverage_and_aci_level(tmp_path):
    metrics = exported_names(tmp_path)
    wanted = {
        "Volatility forecast vs realized": {
            "candlecast_monitor_target_newest_forecast",
            "candlecast_monitor_target_newest_realized",
        },
        "Interval coverage over time": {
            "candlecast_monitor_target_interval_coverage",
            "candlecast_monitor_target_aci_coverage",
            "candlecast_monitor_realized_interval_coverage",
        },
        "ACI level in use": {"candlecast_monitor_target_aci_level"},
    }
    for stream in load_pairs().streams:
        board = json.loads(dashboards.dashboard_file(stream).read_text())
        panels = {p["title"]: p for p in board["panels"]}
        for title, names in wanted.items():
            exprs = [t["expr"] for t in panels[title]["targets"]]
            used = {n for e in exprs for n in re.findall(r"\bcandlecast_monitor_\w+", e)}
            assert used == names and names <= metrics
            for expr in exprs:
                # one selector per query, balanced, its label matchers well formed
                assert expr.count("{") == expr.count("}") == 1
                matchers = expr[expr.index("{") + 1 : expr.index("}")].split(", ")
                assert all(re.fullmatch(r'\w+(=|=~)"[^"]+"', m) for m in matchers), expr
        assert (
            'target=~"volatility_.*"'
            in panels["Volatility forecast vs realized"]["targets"][0]["expr"]
        )
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))


def test_each_stream_dashboard_switches_stream_and_opens_on_its_own():
    streams = load_pairs().streams
    keys = [s.key for s in streams]
    for stream in streams:
        board = json.loads(dashboards.dashboard_file(stream).read_text())
        (variable,) = board["templating"]["list"]
        assert variable["name"] == "stream" and variable["type"] == "custom"
        assert variable["query"].split(",") == keys
        assert [o["value"] for o in variable["options"]] == keys
        assert variable["current"]["value"] == stream.key
        assert [o["value"] for o in variable["options"] if o["selected"]] == [stream.key]


def test_a_stream_dashboard_alone_lists_its_own_stream():
    (stream, *_) = load_pairs().streams
    (variable,) = dashboards.pair_dashboard(stream)["templating"]["list"]
    assert variable["query"] == stream.key and variable["current"]["value"] == stream.key


#: The unit a series must be drawn in, by its metric's name.
UNIT_OF = [
    (r"_seconds(_bucket)?\b", "s"),
    (r"_(share|accuracy|rate|coverage)\b", "percentunit"),
    (
        r"_(drifted_features|forecasts_logged|forecasts_realized|champion_version"
        r"|served_model_version|retrain_requests_total|cache_refreshes_total)\b",
        "none",
    ),
]


def test_each_panel_draws_one_unit_the_unit_of_its_metrics():
    """One unit per panel, so one per axis: seconds are drawn in seconds, shares and rates as
    percentages, counts plainly (staleness in seconds was plotted on the axis of forecast
    counts)."""
    streams = load_pairs().streams
    boards = [json.loads(dashboards.dashboard_file(s).read_text()) for s in streams]
    boards.append(json.loads((dashboards.DASHBOARDS_DIR / dashboards.SERVICE_FILE).read_text()))
    checked = 0
    for board in boards:
        for panel in (p for p in board["panels"] if p["type"] == "timeseries"):
            assert panel["fieldConfig"]["overrides"] == [], panel["title"]
            unit = panel["fieldConfig"]["defaults"]["unit"]
            for target in panel["targets"]:
                for pattern, wanted in UNIT_OF:
                    if re.search(r"(candlecast|bentoml)_\w*" + pattern, target["expr"]):
                        assert unit == wanted, (panel["title"], target["expr"])
                        checked += 1
                        break
    assert checked >= 20


def test_each_stream_dashboard_links_its_mlflow_airflow_and_service_pages():
    from candlecast.settings import Settings

    settings = Settings(
        mlflow_ui_url="http://mlflow.example:5000/",
        airflow_host="airflow.example",
        airflow_port=8081,
        service_url="http://api.example",
    )
    for stream in load_pairs().streams:
        links = dashboards.pair_dashboard(stream, settings=settings)["links"]
        urls = {link["title"]: link.get("url") for link in links}
        assert urls["MLflow experiment"].startswith("http://mlflow.example:5000/#/experiments")
        assert stream.experiment.replace("/", "%2F") in urls["MLflow experiment"]
        assert urls["Registered model"].startswith("http://mlflow.example:5000/#/models/")
        for dag_id in stream.dag_ids:
            assert urls[f"Airflow {dag_id}"] == f"http://airflow.example:8081/dags/{dag_id}"
        assert urls["Prediction service"] == "http://api.example/docs"
        assert links[-1]["type"] == "dashboards" and links[-1]["tags"] == ["candlecast"]
        # the committed files link the default local addresses
        committed = json.loads(dashboards.dashboard_file(stream).read_text())["links"]
        assert {link["title"] for link in committed} == set(urls)
        assert all("127.0.0.1" in link.get("url", "127.0.0.1") for link in committed)


def test_recent_checks_come_from_the_exporter_of_a_local_sqlite_store(tmp_path):
    """Checks written to a SQLite metrics table reach the "Recent checks" table through the
    exporter: its series carry every column the panel shows, newest checks only."""
    from dataclasses import replace

    from candlecast.monitoring.exporter import RECENT_CHECKS, MonitoringCollector
    from candlecast.monitoring.store import CheckRow

    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    row = CheckRow(
        stream="replay_btc_usd_1h", checked_at=0, as_of=0, champion_version="2", features=15,
        drifted_features=3, drift_share=0.2, drift_detected=False, prediction_drift_score=None,
        prediction_drifted=None, forecasts_logged=10, forecasts_realized=9, rmse_ratio=0.98,
        mae_ratio=0.97, directional_accuracy=0.52, majority_rate=0.5, coverage=0.9,
        feature_staleness_s=60.0, retrain=False, rate_limited=False, reason="no drift",
    )  # fmt: skip
    hour = 3_600_000
    for i in range(RECENT_CHECKS + 5):
        store.write_check(replace(row, checked_at=i * hour, as_of=i * hour), [], [])
    store.write_check(replace(row, stream="other_x_y_1h", reason="drift"), [], [])
    (family,) = [
        f for f in MonitoringCollector(store).collect() if f.name.endswith("_recent_check")
    ]
    mine = [s.labels for s in family.samples if s.labels["stream"] == "replay_btc_usd_1h"]
    assert len(mine) == RECENT_CHECKS
    assert mine[0]["as_of"] == "1970-01-02 00:00" and mine[0]["champion"] == "v2"
    assert mine[0]["drift_share"] == "0.20" and mine[0]["rmse_ratio"] == "0.980"
    assert mine[0]["decision"] == "keep" and mine[0]["reason"] == "no drift"
    (panel,) = [p for p in dashboards.pair_dashboard(Stream.from_key(row.stream))["panels"]
                if p["title"] == "Recent checks"]  # fmt: skip
    (organize,) = panel["transformations"]
    assert set(organize["options"]["indexByName"]) == set(mine[0]) - {"stream"}
