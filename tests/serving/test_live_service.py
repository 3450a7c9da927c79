"""The prediction service as deployed: a real ``bentoml serve`` on 127.0.0.1 with API keys,
over a world the pipeline built (ETH/BTC 5m). The tests run in file order and change the
world as the pipeline would: newer features announced, a new champion swapped in under load,
a model that cannot load, a pair added to the config.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from candlecast.cli import embedded
from candlecast.names import Stream
from candlecast.serving.notify import announce
from candlecast.serving.schemas import BatchForecasts, ErrorBody, Forecast, Pairs, RowForecasts
from candlecast.settings import Settings
from tests.serving import world
from tests.serving.test_service import free_port

pytestmark = pytest.mark.slow

KEY = "test-key-0123456789"
ETH = Stream("binance", "ETH/BTC", "5m")
LTC = Stream("binance", "LTC/BTC", "5m")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    env = world.build(root)
    env["CANDLECAST_API_KEYS"] = f"other-key, {KEY}"
    port = free_port()
    log = root / "bentoml.log"
    proc = embedded.start(embedded.bentoml_command("127.0.0.1", port), log, env)
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
        settings = Settings(home=root / "home", pairs=root / "pairs.yaml", service_port=port)
        yield f"http://127.0.0.1:{port}", env, root, settings
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert KEY not in log.read_text()  # keys are never logged


def call(base, path, body=None, key=KEY, raw=None, content_type="application/json"):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": content_type} if data is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def onnx_forecast(home: Path, bento_model: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    name, version = bento_model.split(":")
    path = home / "bentoml" / "models" / name / version / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def online(env, features):
    return json.loads(world.run_in(env, f"w.online_row('ETH/BTC', {json.dumps(features)!r})"))


def check_served_equals_onnx(base, env, root):
    status, answer = call(base, "/predict", {"pair": "ETH/BTC"})
    assert status == 200, answer
    Forecast.model_validate(answer)
    _, pairs = call(base, "/pairs")
    features = pairs["pairs"][0]["features"]
    values = online(env, features)
    x = np.array([[values[c] for c in features]])
    direct = onnx_forecast(root / "home", answer["model"]["bento_model"], x)[0]
    assert answer["predicted_return"] == pytest.approx(direct, abs=1e-12)
    assert answer["last_close"] == values["close"]
    return answer, values


def test_forecast_equals_the_onnx_model_on_the_same_features(served):
    base, env, root, _ = served
    answer, _ = check_served_equals_onnx(base, env, root)
    assert answer["feature_timestamp"] == "2018-01-29T00:00:00+00:00"
    assert answer["stale"] is True and answer["horizon"] == 1


def test_every_target_is_answered_by_the_version_mlflow_calls_champion(served):
    base, env, *_ = served
    status, answer = call(base, "/predict", {"pair": "ETH/BTC"})
    assert status == 200, answer
    Forecast.model_validate(answer)
    champions = json.loads(world.run_in(env, "w.target_champions('ETH/BTC')"))
    served_versions = {t["key"]: t["model"]["version"] for t in answer["targets"]}
    assert served_versions == champions  # one source of truth: the service names MLflow's
    assert set(champions) == {"return_h4", "return_h24", "volatility_h1", "volatility_h24"}
    step = 5 * 60_000
    for target in answer["targets"]:
        closed = pd.Timestamp(answer["feature_timestamp"])
        assert pd.Timestamp(target["forecast_for"]) == closed + pd.Timedelta(
            milliseconds=target["horizon"] * step
        )
        if target["target"] == "volatility":
            assert target["sigma"] == pytest.approx(target["variance"] ** 0.5)
        else:
            assert set(target["intervals"]["levels"]) == {"0.8", "0.9", "0.95"}
        if target["model"]["baseline"]:
            assert target["note"]
    assert set(answer["intervals"]["levels"]) == {"0.8", "0.9", "0.95"}
    status, one = call(base, "/predict", {"pair": "ETH/BTC", "target": "volatility", "horizon": 24})
    assert status == 200 and [t["key"] for t in one["targets"]] == ["volatility_h24"]


def test_keys_are_required_except_for_probes(served):
    base, *_ = served
    for key in (None, "wrong", KEY + "x"):
        status, body = call(base, "/predict", {"pair": "ETH/BTC"}, key=key)
        assert status == 401
        ErrorBody.model_validate(body)
    assert call(base, "/pairs", key=None)[0] == 401
    assert call(base, "/metrics", key=None)[0] == 401
    assert call(base, "/predict", {"pair": "ETH/BTC"}, key="other-key")[0] == 200
    for probe in ("/readyz", "/livez", "/healthz"):
        assert call(base, probe, key=None)[0] == 200, probe


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"body": {"pair": "DOGE/USD"}}, 404, "no configured stream matches"),
        ({"body": {"pair": "ETH/BTC", "timeframe": "4h"}}, 404, "configured: ETH/BTC"),
        ({"body": {"pear": "ETH/BTC"}}, 422, "pair: Field required"),
        ({"body": {"pair": 42}}, 422, "string"),
        ({"body": {"pair": "ETH/BTC", "horizon": 3}}, 404, "no return forecast at horizon 3"),
        ({"body": {"pair": "ETH/BTC", "target": "vol"}}, 422, "target"),
        ({"body": {"pair": "ETH/BTC", "horizon": 0}}, 422, "horizon"),
        ({"body": {"pair": "ETH/BTC", "horizon": "1"}}, 422, "horizon"),
        ({"body": {"pair": "ETH/BTC", "horizon": True}}, 422, "horizon"),
        ({"raw": b"{not json"}, 400, "not valid JSON"),
        ({"raw": b"a=b", "content_type": "multipart/form-data; boundary=x"}, 415, "JSON"),
        ({"raw": b"pair=ETH", "content_type": "application/x-www-form-urlencoded"}, 415, "JSON"),
    ],
)
def test_errors_are_documented_objects(served, kwargs, status, message):
    base, *_ = served
    got, body = call(base, "/predict", **kwargs)
    assert got == status, body
    assert message in json.dumps(body)
    ErrorBody.model_validate(body)
    if status == 422:
        assert all(isinstance(line, str) for line in body["detail"])


def test_every_path_answers_errors_with_the_documented_body(served):
    """Paths nobody routes and methods a route lacks, BentoML's own routes included."""
    base, *_ = served
    for path, body, status in (
        ("/nowhere", None, 404),
        ("/livez", {}, 405),
        ("/metrics", {}, 405),
        ("/predict", None, 405),
    ):
        got, answer = call(base, path, body)
        assert got == status, (path, answer)
        ErrorBody.model_validate(answer)


def test_a_body_over_the_limit_gets_413_before_it_is_read(served):
    base, *_ = served
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=120)
    connection.putrequest("POST", "/predict")
    for name, value in [
        ("Content-Type", "application/json"),
        ("Content-Length", str(64 * 1024 * 1024)),
        ("Authorization", f"Bearer {KEY}"),
    ]:
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(b" " * 65536)  # the rest is never sent: the answer comes first
    response = connection.getresponse()
    assert response.status == 413
    assert "limit" in ErrorBody.model_validate_json(response.read()).error
    connection.close()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [b" " * 1048576] * 9) + b"0\r\n\r\n"
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=120)
    connection.request(
        "POST",
        "/predict",
        body=chunked,
        headers={
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            "Authorization": f"Bearer {KEY}",
        },
    )
    assert connection.getresponse().status == 413  # no length announced: counted as read


def test_pairs_metrics_and_batch_rows(served):
    base, _env, root, _ = served
    status, pairs = call(base, "/pairs")
    assert status == 200
    info = Pairs.model_validate(pairs).pairs[0]
    assert info.served and info.stream == ETH.key and info.deployed_at and info.features
    assert info.trained_at and info.holdout_metrics  # from the pipeline's MLflow run
    _, metrics = call(base, "/metrics")
    assert f'candlecast_predictions_total{{endpoint="predict",stream="{ETH.key}"}}' in metrics
    assert f'candlecast_feature_age_seconds{{stream="{ETH.key}"}}' in metrics
    assert "candlecast_served_model_version" in metrics
    # a user's own rows, checked against the model's input schema
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, len(info.features)))
    body = {"pair": "ETH/BTC", "features": info.features, "rows": rows.tolist()}
    status, out = call(base, "/predict_batch", body)
    assert status == 200, out
    forecasts = RowForecasts.model_validate(out)
    direct = onnx_forecast(root / "home", forecasts.model.bento_model, rows)
    assert np.allclose(forecasts.predicted_return, direct, rtol=0, atol=1e-12)
    reordered = {**body, "features": info.features[::-1], "rows": rows[:, ::-1].tolist()}
    assert call(base, "/predict_batch", reordered)[1]["predicted_return"] == out["predicted_return"]
    status, bad = call(base, "/predict_batch", {**body, "features": info.features[:-1]})
    assert status == 422 and "missing: " + info.features[-1] in bad["error"]
    ragged = {**body, "rows": [rows[0].tolist(), rows[1].tolist()[:-1]]}
    status, bad = call(base, "/predict_batch", ragged)
    assert status == 422 and bad["error"].startswith("rows[1] holds"), bad
    assert "sequence" not in bad["error"] and "inhomogeneous" not in bad["error"]
    status, many = call(base, "/predict_batch", {"pairs": [{"pair": "ETH/BTC"}, {"pair": "X/Y"}]})
    assert status == 200
    many = BatchForecasts.model_validate(many)
    assert [f.stream for f in many.forecasts] == [ETH.key] and many.errors[0].status == 404


@pytest.fixture
def keyed(monkeypatch):
    """The pipeline's environment holds the service's key, which announce() sends."""
    monkeypatch.setenv("CANDLECAST_API_KEYS", KEY)


def test_announce_never_fails_the_caller(served, monkeypatch):
    *_, settings = served
    monkeypatch.setenv("CANDLECAST_API_KEYS", "not-the-key")
    assert announce(ETH, settings) is False  # refused: 401
    down = settings.model_copy(update={"service_port": free_port()})
    assert announce(ETH, down) is False  # nobody listening


def test_a_newer_candle_announced_is_served_next(served, keyed):
    base, env, root, settings = served
    before, _ = check_served_equals_onnx(base, env, root)
    online_ms = world.run_in(env, "w.materialize('ETH/BTC', '2018-01-29', '2018-01-29T01:00')")
    assert announce(ETH, settings) is True
    after, values = check_served_equals_onnx(base, env, root)
    assert int(values["candle_ts"]) == int(online_ms)
    assert after["feature_timestamp"] == "2018-01-29T01:00:00+00:00" != before["feature_timestamp"]


def test_a_new_champion_swaps_in_under_load_without_a_failed_request(served, keyed):
    base, env, root, settings = served
    answers, failures, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            status, body = call(base, "/predict", {"pair": "ETH/BTC"})
            (answers if status == 200 else failures).append(body)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        tag = world.run_in(env, "w.deploy_lightgbm('ETH/BTC', '100', n_estimators=80)")
        assert announce(ETH, settings) is True
        status, first = call(base, "/predict", {"pair": "ETH/BTC"})
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert status == 200 and first["model"]["bento_model"] == tag
    assert not failures and len(answers) > 50
    by_model = {}
    for body in answers:  # each answer comes whole from one model: never a mix of two
        by_model.setdefault(body["model"]["bento_model"], set()).add(
            (body["model"]["version"], body["predicted_return"])
        )
    assert tag in by_model and len(by_model) == 2, by_model.keys()
    for model, seen in by_model.items():
        assert len(seen) == 1, (model, seen)
    check_served_equals_onnx(base, env, root)


def test_a_model_that_cannot_load_is_not_switched_to(served, keyed):
    base, env, _root, settings = served
    _, before = call(base, "/predict", {"pair": "ETH/BTC"})
    broken = world.run_in(env, "w.deploy_lightgbm('ETH/BTC', '101', broken=True)")
    announce(ETH, settings)
    status, after = call(base, "/predict", {"pair": "ETH/BTC"})
    assert status == 200 and after["model"] == before["model"] != broken
    _, pairs = call(base, "/pairs")
    assert f"model {broken} rejected" in pairs["pairs"][0]["error"]
    _, metrics = call(base, "/metrics")
    assert 'outcome="model_rejected"' in metrics


def test_a_pair_added_to_the_config_is_served_without_restart(served, keyed):
    base, env, root, settings = served
    world.write_config(root / "pairs.yaml", with_ltc=True)
    status, body = call(base, "/predict", {"pair": "LTC/BTC"})
    assert status == 503 and "no model deployed" in body["error"]  # configured, not deployed
    world.run_in(env, "w.materialize('LTC/BTC', '2018-01-27', '2018-01-29')")
    tag = world.run_in(env, "w.deploy_lightgbm('LTC/BTC', '1', like='ETH/BTC')")
    assert announce(LTC, settings) is True
    status, body = call(base, "/predict", {"pair": "LTC/BTC"})
    assert status == 200 and body["model"]["bento_model"] == tag
    assert body["feature_timestamp"] == "2018-01-29T00:00:00+00:00"


def test_the_published_openapi_document_holds_for_every_response(served):
    """schemathesis: bounded generated requests to every documented operation; no 5xx and
    no status, header or body outside the document."""
    import httpx
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    base, *_ = served
    headers = {"Authorization": f"Bearer {KEY}"}
    schema = schemathesis.openapi.from_url(f"{base}/docs.json", headers=headers)
    client = httpx.Client(timeout=120)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def probe(case):
            # Sent with httpx: schemathesis' own requests transport trips over the
            # urllib3-future pools installed here; the validation is schemathesis' own.
            request = case.as_transport_kwargs(base_url=base, headers=headers)
            request.pop("timeout", None)
            response = client.request(**request)
            case.validate_response(response)

        probe()
        checked.append(operation.label)
    assert {"POST /predict", "POST /predict_batch", "GET /pairs", "GET /readyz"} <= set(checked)


def test_the_docs_page_loads_every_script_and_style_from_the_service(served):
    """/docs works without internet: every script and stylesheet it references is served by
    the service itself (200), and the document it renders is the service's /docs.json."""
    import re
    import urllib.parse

    base, *_ = served
    status, page = call(base, "/docs")
    assert status == 200 and "<title>candlecast prediction service</title>" in page
    referenced = re.findall(r'<(?:script|link)[^>]*?(?:src|href)="([^"]+)"', page)
    assert len(referenced) == 2 and "SwaggerUIBundle" in page and 'url: "docs.json"' in page
    for reference in [*referenced, "docs.json"]:
        url = urllib.parse.urljoin(f"{base}/docs", reference)
        assert url.startswith(f"{base}/"), reference  # nothing from another host
        status, body = call(base, url.removeprefix(base))
        assert status == 200 and body, reference
    assert call(base, "/redoc")[0] == 404  # FastAPI's CDN-loaded pages are not served


def test_the_docs_page_renders_the_service_in_a_browser(served, tmp_path):
    """/docs as a user sees it in headless Chromium: Swagger UI rendered from the service's
    own assets, titled with the package version, every operation listed; a screenshot is kept
    as a test artifact (DOM assertions, the PNG is for people)."""
    import os

    from candlecast import __version__
    from tests.browser import Browser, chromium
    from tests.helpers import REPO

    if chromium() is None:
        pytest.skip("chromium missing (scripts/setup.sh)")
    base, *_ = served
    folder = Path(os.environ.get("CANDLECAST_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    with Browser.launch(tmp_path / "chromium") as browser:
        # this service asks for a key on every path but the probes: the browser sends it
        browser.call("Network.enable")
        browser.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {KEY}"})
        browser.goto(f"{base}/docs")
        title = browser.wait_for(
            "(() => { const t = document.querySelector('.swagger-ui .info .title');"
            " return t && document.querySelectorAll('.opblock').length > 3 ? t.innerText : null;"
            " })()",
            "Swagger UI rendered with its operations",
        )
        paths = browser.evaluate(
            "[...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText)"
        )
        browser.screenshot(folder / "service-docs.png")
    assert "candlecast prediction service" in title and __version__ in title
    assert {"/predict", "/predict_batch", "/pairs", "/readyz"} <= {p.strip() for p in paths}


def test_served_forecasts_are_recorded_in_the_forecast_log(served):
    """What monitoring joins with realized returns: every /predict answer, written behind the
    request by the service's background writer."""
    import time

    from candlecast.serving.forecast_log import read_forecasts

    base, _, _, settings = served
    status, answer = call(base, "/predict", {"pair": "ETH/BTC"})
    assert status == 200
    deadline = time.monotonic() + 300
    while True:
        logged = read_forecasts(ETH.key, settings=settings)
        versions = set(logged["model_version"]) if len(logged) else set()
        if answer["model"]["version"] in versions:
            break
        assert time.monotonic() < deadline, f"not logged: {logged.tail()}"
        time.sleep(1)
    row = logged[logged["model_version"] == answer["model"]["version"]].iloc[-1]
    assert row["predicted"] == pytest.approx(answer["predicted_return"])
