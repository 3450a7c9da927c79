"""Fifty configured streams served by one real ``bentoml serve``: ETH/BTC and 49 clones of it
on synthetic exchanges, three of them with a deployed model and online features (the rest
configured only), as the pipeline leaves a fleet whose streams are not all trained yet."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from candlecast.cli import embedded
from tests.serving import world
from tests.serving.test_service import free_port

pytestmark = pytest.mark.slow

STREAMS = 50


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    env = world.build(root)
    assert world.run_in(env, f"w.serve_clones({STREAMS - 1}, 2)") == str(STREAMS)
    port = free_port()
    proc = embedded.start(embedded.bentoml_command("127.0.0.1", port), root / "bento.log", env)
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ask(base: str, exchange: str) -> tuple[int, dict]:
    body = {"pair": "ETH/BTC", "exchange": exchange, "timeframe": "5m"}
    return call(f"{base}/predict", body)


def test_every_configured_stream_is_listed(fleet):
    status, pairs = call(f"{fleet}/pairs")
    assert status == 200
    assert len(pairs["pairs"]) == STREAMS


def test_a_served_clone_answers_with_its_own_stream_and_model(fleet):
    status, original = ask(fleet, "binance")
    assert status == 200
    status, clone = ask(fleet, world.clone_exchange(1))
    assert status == 200, clone
    assert clone["stream"] == "synth0001_eth_btc_5m"
    assert clone["model"]["name"] == "synth0001_eth_btc_5m_forecaster"
    # the same candles and the same model: the same forecast
    assert clone["predicted_return"] == original["predicted_return"]
    assert clone["feature_timestamp"] == original["feature_timestamp"]


def test_a_configured_stream_without_a_model_is_503_naming_why(fleet):
    status, body = ask(fleet, world.clone_exchange(STREAMS - 2))
    assert status == 503
    assert "no model deployed yet" in body["error"]


def test_the_fleet_worker_holds_no_training_library(fleet):
    status, health = call(f"{fleet}/health")
    assert status == 200
    assert health["process"]["training_libraries"] == []
    assert len(health["streams"]) == STREAMS
