"""Dashboards as code: the files are what the module generates, and every panel references a
provisioned datasource and metrics (or columns) that exist."""

import json
import re

import yaml

from candlecast.config import load_pairs
from candlecast.monitoring import dashboards, grafana
from candlecast.monitoring.exporter import MonitoringCollector
from candlecast.monitoring.store import CHECKS, MetricsStore
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
    columns = {c.name for c in CHECKS.columns}
    for stream in load_pairs().streams:
        board = json.loads(dashboards.dashboard_file(stream).read_text())
        assert board["annotations"]["list"][0]["target"]["tags"] == ["candlecast", "$stream"]
        for panel in board["panels"]:
            for target in [panel, *panel["targets"]]:
                assert sources[target["datasource"]["uid"]] == target["datasource"]["type"]
            for target in panel["targets"]:
                if "expr" in target:
                    used = set(re.findall(r"\bcandlecast_monitor_\w+", target["expr"]))
                    assert used and used <= metrics, (panel["title"], used - metrics)
                    assert 'stream="$stream"' in target["expr"]
                else:
                    assert "WHERE stream = ${stream:sqlstring} " in target["rawSql"]
                    selected = re.search(r"SELECT (.*) FROM monitoring_checks", target["rawSql"])
                    named = {p.strip().split(" AS ")[0] for p in selected[1].split(",")}
                    assert named - {"to_timestamp(checked_at / 1000.0)"} <= columns


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
