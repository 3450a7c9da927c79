"""Prometheus metrics of the prediction service, beside BentoML's own on ``/metrics``.

``prometheus_client`` is imported on first use, not at import: BentoML sets the
multiprocess directory in each worker after the service module is imported, and metrics
created before that would be invisible to its ``/metrics`` (so :func:`setup` is called from
the service's constructor). Feature age is computed when scraped (:func:`feature_age_text`).
"""

from __future__ import annotations

import contextlib
import errno
import time
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from candlecast.serving.snapshot import Snapshot

#: Latency buckets (seconds): answers from memory take well under a millisecond.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@cache
def _registry() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "predictions": Counter(
            "candlecast_predictions", "Forecasts answered, per stream", ["stream", "endpoint"]
        ),
        "latency": Histogram(
            "candlecast_prediction_latency_seconds",
            "Time to answer a prediction request inside the service, per endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
        ),
        "version": Gauge(
            "candlecast_served_model_version",
            "Registered model version served, per stream",
            ["stream"],
            multiprocess_mode="livemostrecent",
        ),
        "features": Gauge(
            "candlecast_feature_timestamp_seconds",
            "Close time (unix s) of the candle the served features describe, per stream",
            ["stream"],
            multiprocess_mode="livemostrecent",
        ),
        "refreshes": Counter(
            "candlecast_cache_refreshes",
            "Snapshot refreshes per stream and outcome (ok, not_ready, error, model_rejected)",
            ["stream", "outcome"],
        ),
        "store_failures": Counter(
            "candlecast_store_failures",
            "Failed store operations of the service: store (online, forecast_log, "
            "announcements) and outcome (error: tried and failed; refused: skipped by the open "
            "circuit breaker; disk_full, unwritable: a write to disk)",
            ["store", "outcome"],
        ),
        "forecasts_unlogged": Counter(
            "candlecast_forecasts_unlogged",
            "Answered forecasts dropped from the forecast log (it failed for too long)",
        ),
    }


def setup() -> None:
    """Create the metrics (in a BentoML worker: after its multiprocess directory is set)."""
    _registry()


class _Lazy:
    def __init__(self, name: str) -> None:
        self.name = name

    def labels(self, **labels: str) -> Any:
        return _registry()[self.name].labels(**labels)


PREDICTIONS = _Lazy("predictions")
LATENCY = _Lazy("latency")
REFRESHES = _Lazy("refreshes")
STORE_FAILURES = _Lazy("store_failures")


def failure_outcome(exc: BaseException) -> str:
    """A failed write's kind for ``candlecast_store_failures``: disk_full, unwritable or
    error."""
    text = str(exc).lower()
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG) or "full" in text:
        return "disk_full"
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EROFS:
        return "unwritable"
    return "unwritable" if "readonly" in text or "unable to open" in text else "error"


def forecasts_unlogged(count: int) -> None:
    """Count ``count`` answered forecasts that the forecast log dropped."""
    _registry()["forecasts_unlogged"].inc(count)


def observe_snapshot(snap: Snapshot) -> None:
    """Record what a stream now serves."""
    metrics = _registry()
    key = snap.pair.key
    with contextlib.suppress(TypeError, ValueError):
        metrics["version"].labels(stream=key).set(float(snap.model.card.version or "nan"))
    metrics["features"].labels(stream=key).set(snap.features_at_ms / 1000)


def feature_age_text(snapshots: dict[str, Snapshot], now: float | None = None) -> str:
    """``candlecast_feature_age_seconds`` per served stream, in the text exposition format."""
    now = time.time() if now is None else now
    lines = [
        "# HELP candlecast_feature_age_seconds Age of the served features (now - candle close)",
        "# TYPE candlecast_feature_age_seconds gauge",
    ]
    for key, snap in sorted(snapshots.items()):
        age = now - snap.features_at_ms / 1000
        lines.append(f'candlecast_feature_age_seconds{{stream="{key}"}} {age:.3f}')
    return "\n".join(lines) + "\n"
