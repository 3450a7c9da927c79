"""The API's error contract: strict request types (no ``"1"`` or ``true`` for a number), one
JSON error body for every path whoever answers it, and no file path of the service in a body
(ragged rows, which need a served model, are in ``test_live_service``).

The API app the BentoML service mounts, behind the service's :class:`Guard`, called over HTTP
in-process; the forecaster is real, on the test session's stores, for a stream of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from candlecast.config import load_pairs
from candlecast.serving.api import create_app
from candlecast.serving.forecaster import Forecaster
from candlecast.serving.guard import Guard
from candlecast.serving.modelstore import bentoml_store
from tests.helpers import BTC_FILE, deploy_record, model_card
from tests.serving.test_model_integrity import graph

STREAM = {"pair": "BTC/USD", "exchange": "replay", "timeframe": "4h"}


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory):
    pairs = tmp_path_factory.mktemp("api") / "pairs.yaml"
    pairs.write_text(
        "pairs:\n"
        f"  - {{symbol: BTC/USD, exchange: replay, replay_file: {BTC_FILE}, timeframe: 4h}}\n"
    )
    return Forecaster(pairs=load_pairs(pairs))


@pytest.fixture(scope="module")
def client(forecaster):
    return TestClient(Guard(create_app(lambda: forecaster), access_log_enabled=False))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**STREAM, "horizon": "1"}, "horizon"),
        ({**STREAM, "horizon": True}, "horizon"),
        ({**STREAM, "horizon": 1.0}, "horizon"),
        ({"pair": 42}, "pair"),
    ],
)
def test_a_number_or_text_of_the_wrong_type_is_refused(client, body, field):
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422, answer.text
    assert any(line.startswith(f"{field}:") for line in answer.json()["detail"])


def test_rows_of_booleans_are_refused(client):
    body = {**STREAM, "features": ["a", "b"], "rows": [[True, False]]}
    answer = client.post("/predict_batch", json=body)
    assert answer.status_code == 422, answer.text
    assert "valid number" in " ".join(answer.json()["detail"])


def test_an_error_that_another_app_answers_in_plain_text_gets_the_json_body():
    """BentoML's own routes answer unknown paths and methods in plain text; the guard in front
    of everything gives them the one error body."""
    own = Router([Route("/livez", lambda request: PlainTextResponse("ok"))])
    client = TestClient(Guard(own, access_log_enabled=False))
    assert client.get("/livez").text == "ok"
    for method, path, status in (("GET", "/nowhere", 404), ("POST", "/livez", 405)):
        answer = client.request(method, path, json={})
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"].endswith(f": {method} {path}")
    assert "GET" in client.request("POST", "/livez", json={}).headers["allow"]


def test_an_unknown_path_of_the_api_answers_the_json_body(client):
    answer = client.get("/nowhere")
    assert answer.status_code == 404 and answer.json() == {"error": "Not Found"}


@pytest.fixture
def unreadable_model(forecaster):
    """A deployed model of the stream whose file went missing."""
    bentoml_store()
    import bentoml

    pair = forecaster.pairs.pairs[0]
    with bentoml.models.create(pair.stream.bento_model) as model:
        deploy_record(Path(model.path_of("")), graph(0.0), model_card(features=["a"]))
    stored = bentoml.models.get(model.tag)
    Path(stored.path_of("model.onnx")).unlink()
    yield stored
    bentoml.models.delete(model.tag)


def test_a_503_body_names_no_file_path_of_the_service(client, unreadable_model):
    for method, path, body in (
        ("POST", "/predict", STREAM),
        ("POST", "/refresh", {"stream": "replay_btc_usd_4h"}),
        ("GET", "/pairs", None),
        ("GET", "/readyz", None),
    ):
        answer = client.request(method, path, json=body)
        folder = str(Path(unreadable_model.path_of("model.onnx")).parent)
        assert "…/model.onnx" in answer.text, answer.text  # the file is named, its folder not
        assert folder not in answer.text and folder.split("/")[1] not in answer.text
