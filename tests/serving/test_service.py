"""A real ``bentoml serve`` on 127.0.0.1 answering for the pipeline's champion."""

import json
import math
import socket
import subprocess
import urllib.request
from pathlib import Path

import bentoml
import numpy as np
import pytest

from candlecast.cli import embedded
from candlecast.features import featurestore
from candlecast.modeling.onnx_export import ExportedModel, run_onnx
from candlecast.settings import get_settings

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service(pipeline_run, home):
    port = free_port()
    settings = get_settings()
    proc = embedded.start(
        embedded.bentoml_command("127.0.0.1", port),
        home / "logs" / "bentoml-test.log",
        embedded.bentoml_env(settings),
    )
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
        with bentoml.SyncHTTPClient(f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_predict_matches_the_onnx_model_on_the_same_features(service, pipeline_run, home):
    _, base = service
    pair, run, _ = pipeline_run
    request = urllib.request.Request(
        f"{base}/predict",
        data=json.dumps({"pair": "BTC/USD"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    version = answer["model"]["version"]
    exported = ExportedModel.load(home / "models" / pair.key / f"v{version}")
    store = featurestore.feature_store()
    values = featurestore.online_features(
        store, pair.stream, [*exported.features, "close", "candle_ts"]
    )
    row = np.array([[values[c] for c in exported.features]])
    direct = run_onnx(Path(exported.path).read_bytes(), row)[0]
    assert answer["predicted_return"] == pytest.approx(direct, abs=1e-12)
    assert answer["predicted_price"] == pytest.approx(values["close"] * math.exp(direct))
    assert answer["last_close"] == values["close"]
    assert answer["feature_timestamp"] == run.data_interval_end.isoformat()
    assert answer["model"]["kind"] == exported.kind
    assert answer["note"] == exported.note if exported.note else "note" not in answer
    assert answer["stream"] == pair.key and answer["stale"] is True  # the data ends in 2022
    low, high = answer["interval"]["return"]
    assert low < answer["predicted_return"] < high
    assert answer["interval"]["coverage"] == 0.9
    assert (
        answer["interval"]["price"][0] < answer["predicted_price"] < answer["interval"]["price"][1]
    )


def test_what_is_served_has_one_source_of_truth(service, pipeline_run):
    """After a real train and deploy, the service's answer, the MLflow ``champion`` alias and
    ``candlecast monitor`` name the same version, and what the service says about it (``GET
    /pairs``) is the card training wrote on that version's run."""
    from typer.testing import CliRunner

    from candlecast.cli.main import app
    from candlecast.modeling import registry

    _, base = service
    pair, _, _ = pipeline_run
    request = urllib.request.Request(
        f"{base}/predict",
        data=json.dumps({"pair": "BTC/USD"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        served = json.loads(response.read())["model"]["version"]
    registry.configure()
    alias = registry.require_champion(registry.client(), pair.stream)
    done = CliRunner().invoke(app, ["monitor", "--pair", "BTC/USD", "--json"])
    assert done.exit_code == 0, done.output
    monitored = json.loads(done.stdout.strip().splitlines()[-1])["champion_version"]
    assert served == str(alias.version) == str(monitored)
    card = registry.load_card(str(alias.run_id))
    assert card is not None and card.kind == alias.tags["kind"]
    with urllib.request.urlopen(f"{base}/pairs", timeout=60) as response:
        listed = json.loads(response.read())
    (entry,) = [found for found in listed["pairs"] if found["stream"] == pair.key]
    assert entry["model"]["version"] == served and entry["model"]["kind"] == card.kind
    assert entry["trained_at"] == card.trained_at and entry["features"] == card.features
    assert entry["holdout_metrics"] == {f"holdout_{k}": v for k, v in card.scores.items()}


def test_health_reports_the_deployed_model(service, pipeline_run):
    _, base = service
    pair, _, _ = pipeline_run
    out = subprocess.run(["curl", "-sf", f"{base}/health"], capture_output=True, text=True)
    health = json.loads(out.stdout)
    assert health["streams"][pair.key]["model_version"]
    # "ok" only when every configured stream is answered; this session trains some of them
    assert health["served"] >= 1
    expected = "ok" if health["served"] == health["configured"] else "degraded"
    assert health["status"] == expected
    for found in health["streams"].values():
        if "error" in found:
            assert "candlecast run --pair" in found["error"]  # what to do about it


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"pair": "DOGE/USD"}', 404, "no configured stream matches"),
        ('{"pair": "BTC/USD", "timeframe": "4h"}', 404, "configured: BTC/USD on replay at 1h"),
        ('{"pear": "BTC/USD"}', 422, "pair"),
        ('{"pair": 42}', 422, "string"),
        ("{not json", 400, "JSON"),
    ],
)
def test_bad_requests_get_clear_errors(service, body, status, message):
    _, base = service
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            f"{base}/predict",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
    )
    text, code = out.stdout.rsplit("\n", 1)
    assert int(code) == status
    assert message in text


def test_the_served_worker_holds_no_torch_no_training_library_and_no_feast(service):
    """Asked of the running worker (its own report, then its memory map), not of this process:
    its features come from the service's feature reader process, the one that opens Feast."""
    _, base = service
    out = subprocess.run(["curl", "-sf", f"{base}/health"], capture_output=True, text=True)
    process = json.loads(out.stdout)["process"]
    assert process["training_libraries"] == []
    assert process["feast"] is False
    maps = Path(f"/proc/{process['pid']}/maps").read_text()
    assert "/torch/" not in maps and "lightgbm" not in maps and "talib" not in maps.lower()
    assert process["rss_bytes"] > 0
