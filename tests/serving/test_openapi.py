"""The service's OpenAPI document, as BentoML generates it from ``serving/service.py``: a real
title, the package's version, a description of its own, and a real request and answer as the
examples the documentation page shows (OpenAPI 3.0 shows a schema's ``example``)."""

import json
import subprocess
import sys

import pytest

from candlecast import __version__
from candlecast.serving.schemas import Forecast, PredictRequest
from tests.helpers import REPO

GENERATE = """
import json, sys
sys.path.insert(0, ".")
from serving.service import Candlecast
print("SPEC " + json.dumps(Candlecast.openapi_spec.asdict()))
"""


@pytest.fixture(scope="module")
def spec() -> dict:
    # its own process: importing the service keeps torch out of it (candlecast.serving.lean)
    done = subprocess.run(
        [sys.executable, "-c", GENERATE], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("SPEC ")]
    return json.loads(line.removeprefix("SPEC "))


def test_the_document_has_a_title_version_and_description_of_its_own(spec):
    info = spec["info"]
    assert info["title"] == "candlecast prediction service"
    assert info["version"] == __version__
    assert "POST /predict" in info["description"]
    assert "BentoML" not in json.dumps(info) and "contact" not in info


def test_predict_shows_a_real_request_and_answer(spec):
    schemas = spec["components"]["schemas"]
    request, answer = schemas["PredictRequest"]["example"], schemas["Forecast"]["example"]
    assert request == {"pair": "BTC/USD"}
    assert answer["stream"] == "replay_btc_usd_1h" and answer["last_close"] > 0
    # the examples are answers the service can give: they hold to its own models
    PredictRequest.model_validate(request)
    Forecast.model_validate(answer)
    # each band says the level adaptive conformal inference serves now
    band = answer["intervals"]["levels"]["0.9"]
    assert band["aci_level"] == answer["interval"]["aci_level"] and band["multiplier"] > 0
    assert {"multiplier", "aci_level"} <= set(schemas["Band"]["required"])
    operation = spec["paths"]["/predict"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PredictRequest"
    )
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/Forecast")
