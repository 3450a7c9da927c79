"""The exporter scraped by a real Prometheus (/usr/bin/prometheus on 127.0.0.1): every PromQL
query of a stream's dashboard returns data from it."""

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime

import pytest
import yaml

from candlecast.monitoring import dashboards
from tests.helpers import BTC_FILE

pytestmark = pytest.mark.slow
HOUR = 3_600_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def monitored(tmp_path, monkeypatch):
    """A stream with validated candles (the bundled BTC/USD up to the March 2020 crash, which
    drifts), served forecasts in the log, a real check and a retrain request in the metrics
    table, all in its own data directory."""
    from candlecast.config import load_pairs
    from candlecast.data import ingestion
    from candlecast.monitoring.check import check_pair, request_retrain
    from candlecast.monitoring.performance import (
        join_realized,
        realized_performance,
        realized_returns,
    )
    from candlecast.monitoring.store import MetricsStore
    from candlecast.serving.forecast_log import ForecastLog, log_path, read_forecasts
    from candlecast.timeframes import ms_to_iso

    (tmp_path / "pairs.yaml").write_text(
        f"pairs:\n  - {{symbol: BTC/USD, exchange: drill, replay_file: {BTC_FILE}, "
        "timeframe: 1h, monitoring: {window_candles: 500}}\n"
    )
    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANDLECAST_PAIRS", str(tmp_path / "pairs.yaml"))
    (pair,) = load_pairs().pairs
    start, end = datetime(2020, 1, 15, tzinfo=UTC), datetime(2020, 3, 22, tzinfo=UTC)
    ingestion.ingest(pair, start, end, with_history=False)
    ingestion.validate(pair, start, end)
    candles = ingestion.validated_table(pair.stream).read()
    log = ForecastLog(log_path(), flush_interval=3600)
    for ts in candles["ts"].to_numpy()[-200:]:  # forecasts from each candle's features
        body = {
            "stream": pair.key,
            "model": {"version": "3"},
            "feature_timestamp": ms_to_iso(int(ts) + HOUR),
            "forecast_for": ms_to_iso(int(ts) + 2 * HOUR),
            "predicted_return": 0.0005,
            "interval": {"return": [-0.01, 0.011]},
        }
        log.record(body)
    log.close()
    store = MetricsStore()
    checked = check_pair(pair, keep_report=False)
    request_retrain(pair, "data drift: a test request", check_id=checked.check_id)
    # the same figures a check of champion version 3 stores, from the logged forecasts
    realized = realized_performance(
        join_realized(read_forecasts(pair.key), realized_returns(candles, "1h"))
    )
    row = store.checks(pair.key)[-1]
    from dataclasses import replace

    store.write_check(
        replace(
            row,
            checked_at=row.checked_at + 1,
            champion_version="3",
            forecasts_realized=realized.forecasts,
            rmse_ratio=realized.rmse_ratio,
            mae_ratio=realized.mae_ratio,
            directional_accuracy=realized.directional_accuracy,
            majority_rate=realized.majority_rate,
            coverage=realized.coverage,
        ),
        store.feature_drift(checked.check_id),
    )
    return pair, store


def query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())["data"]["result"]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_prometheus_scrapes_the_exporter_and_every_dashboard_query_has_data(monitored, tmp_path):
    from candlecast.monitoring.exporter import serve

    pair, store = monitored
    exporter_port, prometheus_port = free_port(), free_port()
    server, _ = serve(exporter_port, store=store)
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "monitoring",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{prometheus_port}"
    expressions = [e for _, targets, _, _ in dashboards.queries(pair.stream) for e, _ in targets]
    try:
        missing = expressions
        deadline = time.monotonic() + 300  # generous: a loaded machine starts Prometheus slowly
        while missing and time.monotonic() < deadline:
            time.sleep(1)
            try:
                missing = [e for e in expressions if not query(base, e)]
            except OSError:
                continue  # Prometheus not listening yet
        assert missing == []
        (drift,) = query(base, f'candlecast_monitor_drift_share{{stream="{pair.key}"}}')
        assert float(drift["value"][1]) == pytest.approx(store.checks(pair.key)[-1].drift_share)
        (version,) = query(base, f'candlecast_monitor_champion_version{{stream="{pair.key}"}}')
        assert version["value"][1] == "3"
        (realized,) = query(base, f'candlecast_monitor_realized_return{{stream="{pair.key}"}}')
        assert float(realized["value"][1]) != 0.0
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=120)
        server.shutdown()
