"""The metrics table: rows written and read back (SQLite, through SQLAlchemy)."""

from datetime import UTC, datetime

from candlecast.monitoring.store import CheckRow, FeatureRow, MetricsStore


def row(stream: str, checked_at: int, share: float, **changes) -> CheckRow:
    values = dict(
        stream=stream,
        checked_at=checked_at,
        as_of=checked_at - 1000,
        champion_version="4",
        features=2,
        drifted_features=1,
        drift_share=share,
        drift_detected=share >= 0.5,
        prediction_drift_score=0.12,
        prediction_drifted=False,
        forecasts_logged=300,
        forecasts_realized=240,
        rmse_ratio=1.01,
        mae_ratio=0.99,
        directional_accuracy=0.52,
        majority_rate=0.51,
        coverage=0.88,
        feature_staleness_s=3600.0,
        retrain=False,
        rate_limited=False,
        reason="no drift or decay beyond the thresholds",
        report_path="/tmp/r.html",
    )
    return CheckRow(**(values | changes))


def test_checks_and_feature_drift_round_trip(tmp_path):
    store = MetricsStore(f"sqlite:///{tmp_path / 'm' / 'metrics.db'}")
    features = [
        FeatureRow("ret_1", "wasserstein", 0.8, 0.5, True),
        FeatureRow("hour_sin", "jensenshannon", 0.01, 0.1, False),
    ]
    first = store.write_check(row("a_btc_usd_1h", 1000, 0.5), features)
    second = store.write_check(row("a_btc_usd_1h", 2000, 0.0, coverage=None), [])
    other = store.write_check(row("b_eth_btc_5m", 1500, 1.0, rmse_ratio=None), features[:1])
    assert len({first, second, other}) == 3

    again = MetricsStore(store.url)  # a second process sees the same rows
    assert again.checks("a_btc_usd_1h") == [
        row("a_btc_usd_1h", 1000, 0.5),
        row("a_btc_usd_1h", 2000, 0.0, coverage=None),
    ]
    latest = again.latest_checks()
    assert {k: v[0] for k, v in latest.items()} == {"a_btc_usd_1h": second, "b_eth_btc_5m": other}
    assert latest["b_eth_btc_5m"][1].rmse_ratio is None
    assert again.feature_drift(first) == sorted(features, key=lambda f: f.feature)
    assert again.feature_drift(second) == []


def test_retrain_requests_and_the_last_one(tmp_path):
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    assert store.last_retrain_request("a_btc_usd_1h") is None
    at = datetime(2022, 3, 1, 12, tzinfo=UTC)
    store.record_retrain_request("a_btc_usd_1h", datetime(2022, 2, 1, tzinfo=UTC), "old", 1)
    store.record_retrain_request("a_btc_usd_1h", at, "data drift: ...", 2)
    store.record_retrain_request("b_eth_btc_5m", datetime(2023, 1, 1, tzinfo=UTC), "x")
    assert store.last_retrain_request("a_btc_usd_1h") == at
    # in data time: a check as of an earlier moment (a backfill) sees only the requests
    # made by checks as of that moment or before
    before = datetime(2022, 2, 15, tzinfo=UTC)
    assert store.last_retrain_request("a_btc_usd_1h", until=before) == datetime(
        2022, 2, 1, tzinfo=UTC
    )
    assert store.last_retrain_request("a_btc_usd_1h", until=at) == at
    assert (
        store.last_retrain_request("a_btc_usd_1h", until=datetime(2022, 1, 1, tzinfo=UTC)) is None
    )
    assert [r["reason"] for r in store.retrain_requests("a_btc_usd_1h")] == [
        "old",
        "data drift: ...",
    ]


def test_targets_figures_round_trip_and_are_exported(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from candlecast.monitoring.exporter import MonitoringCollector
    from candlecast.monitoring.store import TargetRow

    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    targets = [
        TargetRow("volatility_h24", "3", "har", 480, "qlike", 0.41, 0.62, 0.66, None),
        TargetRow("return_h4", "1", "persistence", 500, "rmse", 0.02, 0.02, 1.0, 0.874),
    ]
    check = store.write_check(row("a_btc_usd_1h", 1000, 0.5), [], targets)
    assert store.target_checks(check) == sorted(targets, key=lambda t: t.target)
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(store))
    text = generate_latest(registry).decode()
    assert (
        'candlecast_monitor_target_interval_coverage{metric="rmse",stream="a_btc_usd_1h",'
        'target="return_h4"} 0.874' in text
    )
    assert (
        'candlecast_monitor_target_realized_ratio{metric="qlike",stream="a_btc_usd_1h",'
        'target="volatility_h24"} 0.66' in text
    )


def test_targets_newest_forecasts_and_aci_state_round_trip_and_are_exported(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from candlecast.monitoring.aci import AciReport
    from candlecast.monitoring.exporter import MonitoringCollector
    from candlecast.monitoring.store import NewestRow, TargetDetails

    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    details = TargetDetails(
        newest=[NewestRow("volatility_h24", 0.52, 0.61)],
        aci=[
            AciReport("return_h4", "0.9", 0.08, 1.83, 200, 19),
            AciReport("return_h1", "0.95", 0.05, 2.1, 0, 0),
        ],
    )
    check = store.write_check(row("a_btc_usd_1h", 1000, 0.5), [], [], details)
    assert store.target_details(check) == TargetDetails(
        details.newest, sorted(details.aci, key=lambda r: r.target)
    )
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(store))
    text = generate_latest(registry).decode()
    labels = 'level="0.9",stream="a_btc_usd_1h",target="return_h4"'
    assert f"candlecast_monitor_target_aci_level{{{labels}}} 0.92" in text
    assert f"candlecast_monitor_target_aci_multiplier{{{labels}}} 1.83" in text
    assert f"candlecast_monitor_target_aci_coverage{{{labels}}} 0.905" in text
    # nothing judged yet: no coverage to show, the level in use is the nominal one
    assert 'candlecast_monitor_target_aci_coverage{level="0.95"' not in text
    assert 'candlecast_monitor_target_aci_level{level="0.95",' in text
    assert (
        'candlecast_monitor_target_newest_forecast{stream="a_btc_usd_1h",'
        'target="volatility_h24"} 0.52' in text
    )


def test_shadow_challengers_round_trip_and_are_exported(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from candlecast.monitoring.exporter import MonitoringCollector
    from candlecast.monitoring.store import ShadowRow, TargetDetails

    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    beaten = ShadowRow("2", "4", 60, 0.85, 1.0, 0.85, 0.0156, True, True)
    young = ShadowRow("5", "3/4", 12, None, None, None, None, False, False)
    check = store.write_check(
        row("a_btc_usd_1h", 1000, 0.5), [], [], TargetDetails([], [], [beaten, young])
    )
    assert store.target_details(check).shadows == [beaten, young]
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(store))
    text = generate_latest(registry).decode()
    labels = 'champions="4",stream="a_btc_usd_1h",version="2"'
    assert f"candlecast_monitor_shadow_rmse_vs_champion{{{labels}}} 0.85" in text
    assert f"candlecast_monitor_shadow_beats_champion{{{labels}}} 1.0" in text
    assert f"candlecast_monitor_shadow_forecasts{{{labels}}} 60.0" in text
    assert f"candlecast_monitor_shadow_p_value{{{labels}}} 0.0156" in text
    # not judged yet: counted, no figures
    young_labels = 'champions="3/4",stream="a_btc_usd_1h",version="5"'
    assert f"candlecast_monitor_shadow_forecasts{{{young_labels}}} 12.0" in text
    assert f"candlecast_monitor_shadow_rmse_vs_champion{{{young_labels}}}" not in text
