"""Prometheus exporter of the monitoring figures, read from the metrics table at each scrape.

Per stream, from its newest check: drift share, per-feature drift score and verdict, prediction
drift, realized skill (RMSE and MAE ratio to persistence, directional accuracy and the majority
rate, interval coverage), forecasts logged and realized, feature staleness, the champion
version; the number of retrain requests; and the newest checks, one series each with their
figures and decision as labels (the dashboards' "Recent checks" table). ``candlecast exporter
--port`` serves it; ``deploy/prometheus/prometheus.yml`` scrapes it as job ``monitoring``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from candlecast.monitoring.store import (
    CheckRow,
    MetricsStore,
    ShadowRow,
    TargetShadowRow,
    TargetVersionRow,
)
from candlecast.settings import Settings
from candlecast.timeframes import ms_to_iso

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


#: Checks per stream in the recent-checks series (one series each: a bounded label churn).
RECENT_CHECKS = 20
#: Labels of a recent check's series, in the table's column order.
RECENT_LABELS = (
    "stream",
    "as_of",
    "champion",
    "drift_share",
    "rmse_ratio",
    "decision",
    "reason",
)


def recent_labels(row: CheckRow) -> list[str]:
    """A check's label values (:data:`RECENT_LABELS`): times in UTC, figures rounded."""
    decision = "retrain" if row.retrain else "rate limited" if row.rate_limited else "keep"
    return [
        row.stream,
        ms_to_iso(row.as_of)[:16].replace("T", " "),
        f"v{row.champion_version}" if row.champion_version else "none",
        "-" if row.drift_share is None else f"{row.drift_share:.2f}",
        "-" if row.rmse_ratio is None else f"{row.rmse_ratio:.3f}",
        decision,
        row.reason,
    ]


class MonitoringCollector(Collector):
    """Collects the newest check of every stream from a :class:`MetricsStore`."""

    def __init__(self, store: MetricsStore, settings: Settings | None = None) -> None:
        self.store = store
        self.store_settings = settings

    def collect(self) -> Iterator[Any]:
        latest = self.store.latest_checks()
        yield from self._gauges(latest)
        yield self._champion(latest)
        yield self._features(latest)
        yield self._requests()
        yield from self._forecasts()
        yield from self._targets(latest)
        yield from self._details(latest)
        yield self._recent()

    def _recent(self) -> GaugeMetricFamily:
        """The newest :data:`RECENT_CHECKS` checks of every stream, one series each: the
        dashboards' "Recent checks" table, from Prometheus in every mode (the metrics table
        may be a local SQLite file no Grafana datasource reads)."""
        family = GaugeMetricFamily(
            f"{PREFIX}_recent_check",
            "A recent check (value: when it ran, unix seconds) with its figures and decision",
            labels=list(RECENT_LABELS),
        )
        for row in self.store.recent_checks(RECENT_CHECKS):
            family.add_metric(recent_labels(row), row.checked_at / 1000)
        return family

    def _targets(self, latest: dict[str, tuple[int, CheckRow]]) -> Iterator[GaugeMetricFamily]:
        """Each served target's realized figures in the newest check of its stream."""
        labels = ["stream", "target", "metric"]
        families = {
            "score": GaugeMetricFamily(
                f"{PREFIX}_target_realized_score",
                "Realized primary score (QLIKE, RMSE)",
                labels=labels,
            ),
            "ratio": GaugeMetricFamily(
                f"{PREFIX}_target_realized_ratio", "Realized score / persistence's", labels=labels
            ),
            "coverage_90": GaugeMetricFamily(
                f"{PREFIX}_target_interval_coverage",
                "Share of realized outcomes inside the 90% interval",
                labels=labels,
            ),
            "forecasts": GaugeMetricFamily(
                f"{PREFIX}_target_forecasts", "Realized forecasts judged", labels=labels
            ),
        }
        for stream, (check_id, _) in sorted(latest.items()):
            for row in self.store.target_checks(check_id):
                for column, family in families.items():
                    value = getattr(row, column)
                    if value is not None:
                        family.add_metric([stream, row.target, row.metric], float(value))
        yield from families.values()

    def _details(self, latest: dict[str, tuple[int, CheckRow]]) -> Iterator[GaugeMetricFamily]:
        """Each target's newest realized forecast and outcome, its intervals' ACI state per
        level, and each shadow challenger against the champion, in the newest check of its
        stream."""
        target = ["stream", "target"]
        level = [*target, "level"]
        newest = {
            "forecast": GaugeMetricFamily(
                f"{PREFIX}_target_newest_forecast",
                "Newest realized forecast (annualized volatility, or log return)",
                labels=target,
            ),
            "realized": GaugeMetricFamily(
                f"{PREFIX}_target_newest_realized",
                "What that forecast's rows realized",
                labels=target,
            ),
        }
        aci = {
            "level": GaugeMetricFamily(
                f"{PREFIX}_target_aci_level",
                "ACI's level in use (1 - alpha) per nominal level",
                labels=level,
            ),
            "multiplier": GaugeMetricFamily(
                f"{PREFIX}_target_aci_multiplier", "Normalized half-width in use", labels=level
            ),
            "coverage": GaugeMetricFamily(
                f"{PREFIX}_target_aci_coverage",
                "Realized coverage of the served intervals since the champion was served",
                labels=level,
            ),
        }
        shadow, versions, targets = _shadow_gauges(), _version_gauges(), _target_shadow_gauges()
        for stream, (check_id, _) in sorted(latest.items()):
            details = self.store.target_details(check_id)
            for judged in details.shadows:
                _add_shadow(shadow, stream, judged)
            for other in details.target_shadows:
                _add_target_shadow(targets, stream, other)
            for figures in details.versions:
                _add_version(versions, stream, figures)
            for found in details.newest:
                newest["forecast"].add_metric([stream, found.target], found.forecast)
                newest["realized"].add_metric([stream, found.target], found.realized)
            for row in details.aci:
                labels = [stream, row.target, row.level]
                aci["level"].add_metric(labels, 1 - row.alpha)
                aci["multiplier"].add_metric(labels, row.multiplier)
                if row.judged:
                    aci["coverage"].add_metric(labels, 1 - row.misses / row.judged)
        yield from newest.values()
        yield from aci.values()
        yield from shadow.values()
        yield from versions.values()
        yield from targets.values()

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

    def _forecasts(self) -> Iterator[GaugeMetricFamily]:
        """The newest realized forecast of every stream in the forecast log: what it said (and
        its interval) beside what the candle did, so a graph shows forecast vs realized."""
        names = {
            "predicted": ("realized_forecast_return", "Newest forecast whose candle has closed"),
            "lower": ("realized_forecast_lower", "Its interval's lower bound (log return)"),
            "upper": ("realized_forecast_upper", "Its interval's upper bound (log return)"),
            "realized": ("realized_return", "The log return that candle realized"),
        }
        families = {
            column: GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["stream"])
            for column, (name, text) in names.items()
        }
        for stream, row in newest_realized(self.store_settings).items():
            for column, family in families.items():
                if row.get(column) is not None and row[column] == row[column]:  # not NaN
                    family.add_metric([stream], float(row[column]))
        yield from families.values()


def newest_realized(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Per stream of the forecast log, its newest forecast whose target candle has closed,
    joined with the realized return (read from the validated candles)."""
    from candlecast.data.ingestion import validated_table
    from candlecast.monitoring.performance import join_realized, realized_returns
    from candlecast.names import Stream
    from candlecast.serving.forecast_log import SHADOW, logged_streams, read_forecasts
    from candlecast.timeframes import timeframe_ms

    found: dict[str, dict[str, Any]] = {}
    for key in logged_streams(settings):
        stream = Stream.from_key(key)
        step = timeframe_ms(stream.timeframe)
        last = validated_table(stream, settings).last_key()
        if last is None:
            continue
        recent = read_forecasts(key, last - 48 * step, last + step, settings)
        recent = recent[recent["source"] != SHADOW]  # a shadow challenger's are not served
        candles = validated_table(stream, settings).read(last - 50 * step, last + step)
        joined = join_realized(recent, realized_returns(candles, stream.timeframe))
        if len(joined):
            found[key] = joined.iloc[-1].to_dict()
    return found


def registry(store: MetricsStore | None = None) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(MonitoringCollector(store or MetricsStore()))
    return found


def serve(port: int, host: str = "127.0.0.1", store: MetricsStore | None = None) -> Any:
    """Serve ``/metrics`` on a background thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry(store))


def _shadow_gauges() -> dict[str, GaugeMetricFamily]:
    labels = ["stream", "version", "champions"]
    described = {
        "forecasts": "Realized rows both the shadow challenger and the champion forecast",
        "rmse_ratio": "The shadow challenger's realized RMSE over persistence's",
        "rmse_vs_champion": "The shadow challenger's realized RMSE over the champion's",
        "p_value": "The gate's one-sided test of shadow against champion (largest p-value)",
        "beats_champion": "1 when the shadow beat the champion by the gate's rules",
    }
    return {
        name: GaugeMetricFamily(f"{PREFIX}_shadow_{name}", text, labels=labels)
        for name, text in described.items()
    }


def _add_shadow(gauges: dict[str, GaugeMetricFamily], stream: str, row: ShadowRow) -> None:
    labels = [stream, row.version, row.champions]
    gauges["forecasts"].add_metric(labels, row.forecasts)
    gauges["beats_champion"].add_metric(labels, float(row.beats))
    for name, value in (
        ("rmse_ratio", row.rmse_ratio),
        ("rmse_vs_champion", row.rmse_vs_champion),
        ("p_value", row.p_value),
    ):
        if value is not None:
            gauges[name].add_metric(labels, value)


def _target_shadow_gauges() -> dict[str, GaugeMetricFamily]:
    """Each other target's shadow challengers against the target as served."""
    labels = ["stream", "target", "version", "champions", "metric"]
    described = {
        "forecasts": "Realized rows both the target's shadow challenger and champion forecast",
        "ratio": "The shadow challenger's realized primary score over persistence's",
        "vs_champion": "The shadow challenger's realized primary score over the champion's",
        "p_value": "The target gate's one-sided test of shadow against champion",
        "beats_champion": "1 when the shadow beat the champion by the target gate's rules",
    }
    return {
        name: GaugeMetricFamily(f"{PREFIX}_target_shadow_{name}", text, labels=labels)
        for name, text in described.items()
    }


def _add_target_shadow(
    gauges: dict[str, GaugeMetricFamily], stream: str, row: TargetShadowRow
) -> None:
    labels = [stream, row.target, row.version, row.champions, row.metric]
    gauges["forecasts"].add_metric(labels, row.forecasts)
    gauges["beats_champion"].add_metric(labels, float(row.beats))
    for name, value in (
        ("ratio", row.ratio),
        ("vs_champion", row.vs_champion),
        ("p_value", row.p_value),
    ):
        if value is not None:
            gauges[name].add_metric(labels, value)


def _version_gauges() -> dict[str, GaugeMetricFamily]:
    """Each other target's realized figures from the logged forecasts, as served (``version``
    ``served``) and per model version."""
    labels = ["stream", "target", "version", "metric"]
    described = {
        "forecasts": "Realized logged forecasts judged",
        "judged": "1 from monitoring.min_forecasts realized forecasts on ('not judged yet': 0)",
        "score": "Realized primary score (QLIKE, RMSE)",
        "ratio": "Realized primary score over persistence's on the same rows",
        "coverage": "Share of realized outcomes inside the logged 90% interval",
    }
    return {
        name: GaugeMetricFamily(f"{PREFIX}_target_version_{name}", text, labels=labels)
        for name, text in described.items()
    }


def _add_version(gauges: dict[str, GaugeMetricFamily], stream: str, row: TargetVersionRow) -> None:
    labels = [stream, row.target, "served" if row.served else row.version, row.metric]
    gauges["forecasts"].add_metric(labels, row.forecasts)
    gauges["judged"].add_metric(labels, float(row.judged))
    for name, value in (("score", row.score), ("ratio", row.ratio), ("coverage", row.coverage_90)):
        if value is not None:
            gauges[name].add_metric(labels, value)
