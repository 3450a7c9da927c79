"""Prometheus exporter of the monitoring figures, read from the metrics table at each scrape.

Per stream, from its newest check: drift share, per-feature drift score and verdict,
prediction drift, realized skill (RMSE and MAE ratio to persistence, directional accuracy and
the majority rate, interval coverage), forecasts logged and realized, feature staleness, the
champion version; and the number of retrain requests. ``candlecast exporter --port`` serves
it; ``deploy/prometheus/prometheus.yml`` scrapes it as job ``monitoring``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from candlecast.monitoring.store import CheckRow, MetricsStore

PREFIX = "candlecast_monitor"
#: Gauges of a check row: metric suffix, column, help.
GAUGES = [
    ("drift_share", "drift_share", "Share of the champion's input features that drifted"),
    ("drifted_features", "drifted_features", "Input features that drifted"),
    ("prediction_drift_score", "prediction_drift_score", "Drift score of served forecasts"),
    ("realized_rmse_ratio", "rmse_ratio", "Realized RMSE / persistence's (below 1: skill)"),
    ("realized_mae_ratio", "mae_ratio", "Realized MAE / persistence's (below 1: skill)"),
    ("realized_directional_accuracy", "directional_accuracy", "Realized directional accuracy"),
    ("realized_majority_rate", "majority_rate", "Accuracy of always calling the commoner move"),
    ("realized_interval_coverage", "coverage", "Share of realized returns inside the interval"),
    ("forecasts_logged", "forecasts_logged", "Forecasts logged in the current window"),
    ("forecasts_realized", "forecasts_realized", "Distinct forecasts whose candle has closed"),
    ("feature_staleness_seconds", "feature_staleness_s", "Age of the newest candle at the check"),
    ("retrain_due", "retrain", "1 when the newest check asked for a retrain"),
]


class MonitoringCollector(Collector):
    """Collects the newest check of every stream from a :class:`MetricsStore`."""

    def __init__(self, store: MetricsStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        latest = self.store.latest_checks()
        yield from self._gauges(latest)
        yield self._champion(latest)
        yield self._features(latest)
        yield self._requests()

    def _gauges(self, latest: dict[str, tuple[int, CheckRow]]) -> Iterator[GaugeMetricFamily]:
        for suffix, column, text in GAUGES:
            family = GaugeMetricFamily(f"{PREFIX}_{suffix}", text, labels=["stream"])
            for stream, (_, row) in sorted(latest.items()):
                value = getattr(row, column)
                if value is not None:
                    family.add_metric([stream], float(value))
            yield family
        checked = GaugeMetricFamily(
            f"{PREFIX}_last_check_timestamp_seconds", "When the newest check ran", labels=["stream"]
        )
        for stream, (_, row) in sorted(latest.items()):
            checked.add_metric([stream], row.checked_at / 1000)
        yield checked

    def _champion(self, latest: dict[str, tuple[int, CheckRow]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            f"{PREFIX}_champion_version", "Champion version at the newest check", labels=["stream"]
        )
        for stream, (_, row) in sorted(latest.items()):
            if row.champion_version and row.champion_version.isdigit():
                family.add_metric([stream], float(row.champion_version))
        return family

    def _features(self, latest: dict[str, tuple[int, CheckRow]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            f"{PREFIX}_feature_drift_score",
            "Per-feature drift score (distance, or p-value for method ks) at the newest check",
            labels=["stream", "feature", "method", "drifted"],
        )
        for stream, (check_id, _) in sorted(latest.items()):
            for row in self.store.feature_drift(check_id):
                drifted = "true" if row.drifted else "false"
                family.add_metric([stream, row.feature, row.method, drifted], row.score)
        return family

    def _requests(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            f"{PREFIX}_retrain_requests", "Drift-triggered retrain requests", labels=["stream"]
        )
        counts: dict[str, int] = {}
        for request in self.store.retrain_requests():
            counts[request["stream"]] = counts.get(request["stream"], 0) + 1
        for stream, count in sorted(counts.items()):
            family.add_metric([stream], count)
        return family


def registry(store: MetricsStore | None = None) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(MonitoringCollector(store or MetricsStore()))
    return found


def serve(port: int, host: str = "127.0.0.1", store: MetricsStore | None = None) -> Any:
    """Serve ``/metrics`` on a background thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry(store))
