"""One real Prometheus (/usr/bin/prometheus on 127.0.0.1), configured from
deploy/prometheus/prometheus.yml's jobs with the targets moved to local ports, scrapes a real
prediction service (``bentoml serve`` over a served world, with API keys) and the monitoring
exporter; every PromQL query of every dashboard file returns data from it."""

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

pytestmark = pytest.mark.slow
KEY = "prometheus-key-0123456789"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
#: per configured stream: the candles checked (the BTC/USD span ends in the March 2020 crash)
SPANS = {
    "BTC/USD": (datetime(2020, 1, 15, tzinfo=UTC), datetime(2020, 3, 22, tzinfo=UTC), 500),
    "ETH/BTC": (datetime(2018, 1, 22, tzinfo=UTC), datetime(2018, 1, 29, tzinfo=UTC), 250),
    "LTC/BTC": (datetime(2018, 1, 22, tzinfo=UTC), datetime(2018, 1, 29, tzinfo=UTC), 250),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configured_pairs(tmp_path):
    """config/pairs.yaml (the streams the dashboard files are generated for), replay files made
    absolute, with each stream's monitoring window."""
    config = yaml.safe_load((REPO / "config" / "pairs.yaml").read_text())
    for pair in config["pairs"]:
        pair["replay_file"] = str((REPO / "config" / pair["replay_file"]).resolve())
        pair["monitoring"] = {"window_candles": SPANS[pair["symbol"]][2]}
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "pairs.yaml"


def log_forecasts(pair: Any, candles: Any) -> None:
    """A served forecast from each of the last 200 candles' features, into the forecast log."""
    from candlecast.serving.forecast_log import ForecastLog, log_path
    from candlecast.timeframes import ms_to_iso, timeframe_ms

    step = timeframe_ms(pair.timeframe)
    log = ForecastLog(log_path(), flush_interval=3600)
    for ts in candles["ts"].to_numpy()[-200:]:
        log.record(
            {
                "stream": pair.key,
                "model": {"version": "3"},
                "feature_timestamp": ms_to_iso(int(ts) + step),
                "forecast_for": ms_to_iso(int(ts) + 2 * step),
                "predicted_return": 0.0005,
                "interval": {"return": [-0.01, 0.011]},
            }
        )
    log.close()


def check(pair: Any, store: Any) -> None:
    """A real check and a retrain request, then the check's row as a check of champion
    version 3 stores it: the realized figures of the logged forecasts."""
    from candlecast.data import ingestion
    from candlecast.monitoring.check import check_pair, request_retrain
    from candlecast.monitoring.performance import (
        join_realized,
        realized_performance,
        realized_returns,
    )
    from candlecast.serving.forecast_log import read_forecasts

    start, end, _ = SPANS[pair.symbol]
    ingestion.ingest(pair, start, end, with_history=False)
    ingestion.validate(pair, start, end)
    candles = ingestion.validated_table(pair.stream).read()
    log_forecasts(pair, candles)
    checked = check_pair(pair, keep_report=False)
    request_retrain(pair, "data drift: a test request", check_id=checked.check_id)
    realized = realized_performance(
        join_realized(read_forecasts(pair.key), realized_returns(candles, pair.timeframe))
    )
    assert realized is not None  # the log's forecasts have closed candles
    row = store.checks(pair.key)[-1]
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
        *served_targets(),
    )


def served_targets() -> tuple[list, Any]:
    """What a check stores of a stream's served targets (this world trains none): realized
    figures, the volatility target's newest forecast beside its outcome, the ACI state, and a
    shadow challenger's comparison with the champion."""
    from candlecast.monitoring.aci import AciReport
    from candlecast.monitoring.store import NewestRow, ShadowRow, TargetDetails, TargetRow

    figures = [
        TargetRow("volatility_h24", "2", "har", 480, "qlike", 0.41, 0.62, 0.66, None),
        TargetRow("return_h4", "1", "persistence", 500, "rmse", 0.02, 0.02, 1.0, 0.874),
    ]
    aci = [AciReport("return_h4", level, 0.08, 1.8, 480, 40) for level in ("0.8", "0.9", "0.95")]
    shadow = ShadowRow("2", "1", 480, 1.0, 1.02, 0.98, 0.2, True, False)
    return figures, TargetDetails([NewestRow("volatility_h24", 0.52, 0.61)], aci, [shadow])


@pytest.fixture
def monitored(tmp_path, monkeypatch):
    """Every configured stream checked, with served forecasts in its log, in one data
    directory; returns the pairs and the metrics table."""
    from candlecast.config import load_pairs
    from candlecast.monitoring.store import MetricsStore

    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANDLECAST_PAIRS", str(configured_pairs(tmp_path)))
    pairs = load_pairs().pairs
    store = MetricsStore()
    for pair in pairs:
        check(pair, store)
    return pairs, store


@pytest.fixture
def service(tmp_path):
    """A real ``bentoml serve`` with API keys over the served ETH/BTC 5m world, LTC/BTC
    configured but not deployed (its forecasts answer 503)."""
    from candlecast.cli import embedded
    from tests.serving import world

    root = tmp_path / "served"
    env = world.build(root)
    world.write_config(root / "pairs.yaml", with_ltc=True)
    env["CANDLECAST_API_KEYS"] = KEY
    port = free_port()
    proc = embedded.start(embedded.bentoml_command("127.0.0.1", port), root / "bentoml.log", env)
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def scrape_config(ports: dict[str, int], key_file: Path) -> dict:
    """deploy/prometheus/prometheus.yml with each job's target on 127.0.0.1 and a 1 s scrape."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key_file)
    return config


def dashboard_queries() -> list[str]:
    """Every Prometheus query of the dashboards, with the ``stream`` variable interpolated as
    Grafana does when a dashboard opens (its own stream)."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        opened = {v["name"]: v["current"]["value"] for v in board["templating"]["list"]}
        for panel in board["panels"]:
            for target in panel["targets"]:
                if "expr" in target:
                    expr = target["expr"]
                    found.append(expr.replace("$stream", opened.get("stream", "$stream")))
    return found


def query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())["data"]["result"]


def predict(port: int, symbol: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps({"pair": symbol}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def traffic(port: int) -> dict:
    """Forecasts, a 503 (LTC/BTC has no model) and a 404 (unknown pair); returns a forecast."""
    status, forecast = predict(port, "ETH/BTC")
    assert status == 200, forecast
    assert predict(port, "LTC/BTC")[0] == 503
    assert predict(port, "DOGE/EUR")[0] == 404
    return forecast


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_prometheus_scrapes_service_and_exporter_and_every_dashboard_query_has_data(
    monitored, service, tmp_path
):
    from candlecast.monitoring.exporter import serve

    pairs, store = monitored
    ports = {"prometheus": free_port(), "predictor": service, "monitoring": free_port()}
    server, _ = serve(ports["monitoring"], store=store)
    (tmp_path / "api-key").write_text(KEY + "\n")
    config = scrape_config(ports, tmp_path / "api-key")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{ports['prometheus']}"
    expressions = dashboard_queries()
    assert any("bentoml_" in e for e in expressions)
    assert {p.key for p in pairs} <= set(re.findall(r'stream="(\w+)"', " ".join(expressions)))
    try:
        missing = expressions
        deadline = time.monotonic() + 300  # generous: a loaded machine starts Prometheus slowly
        while missing and time.monotonic() < deadline:
            forecast = traffic(service)  # rates over the last scrapes need requests in them
            time.sleep(1)
            try:
                missing = [e for e in expressions if not query(base, e)]
            except OSError:
                continue  # Prometheus not listening yet
        assert missing == []
        up = query(base, "up")
        assert {r["metric"]["job"]: r["value"][1] for r in up} == dict.fromkeys(ports, "1")
        for pair in pairs:
            (drift,) = query(base, f'candlecast_monitor_drift_share{{stream="{pair.key}"}}')
            assert float(drift["value"][1]) == pytest.approx(store.checks(pair.key)[-1].drift_share)
            (version,) = query(base, f'candlecast_monitor_champion_version{{stream="{pair.key}"}}')
            assert version["value"][1] == "3"
        (served,) = query(base, 'candlecast_served_model_version{stream="binance_eth_btc_5m"}')
        assert served["value"][1] == forecast["model"]["version"]
        errors = query(base, 'bentoml_service_request_total{http_response_code="503"}')
        assert {e["metric"]["endpoint"] for e in errors} == {"/predict"}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=120)
        server.shutdown()
