"""A refresh that finds nothing keeps the working snapshot, and ``/readyz`` says ready only
while ``/predict`` answers.

After the BentoML model store is moved away, or the online store comes back empty (what a
Redis restart without persistence leaves), ``POST /refresh`` used to leave every ``/predict``
retrying the refresh and answering 503 while ``/readyz`` said ready. The stream here is served
by the real pipeline (LightGBM trained, exported, deployed) from the API app the BentoML
service mounts, called over HTTP in-process; it runs in a subprocess with its own data
directory (BentoML fixes its store at first use).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

SCENARIOS = r"""
import json, shutil, sqlite3
from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from candlecast.orchestration import stages
from candlecast.serving.api import create_app
from candlecast.serving.forecaster import Forecaster
from candlecast.settings import get_settings

pair = stages.with_training(stages.pair_config("BTC/USD"), ["lightgbm"], 30)
end = datetime(2022, 3, 1, tzinfo=UTC)
stages.backfill(pair, end - timedelta(days=40), end)
stages.materialize(pair, end - timedelta(days=1), end)
trained = stages.train(pair, end)
decision = stages.promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
stages.deploy(pair, stages.export(pair, decision), decision)

forecaster = Forecaster()
client = TestClient(create_app(lambda: forecaster))
stream = {"pair": "BTC/USD", "exchange": "replay", "timeframe": "1h"}


def probe():
    refresh = client.post("/refresh", json={"stream": "BTC/USD"}).json()["refreshed"][0]
    predict = client.post("/predict", json=stream)
    ready = client.get("/readyz")
    return {
        "refresh_error": refresh.get("error"),
        "refresh_version": refresh.get("model_version"),
        "predict": predict.status_code,
        "predicted": predict.json().get("predicted_return"),
        "ready": [ready.status_code, ready.json()["ready"]],
        "online_store": ready.json()["online_store"],
    }


out = {"healthy": probe()}
settings = get_settings()
moved = settings.paths.bentoml.with_name("bentoml.moved")
shutil.move(settings.paths.bentoml, moved)
out["store_moved"] = probe()
shutil.move(moved, settings.paths.bentoml)
out["store_back"] = probe()
online = sqlite3.connect(settings.paths.feast / "online.db")
for (table,) in online.execute("select name from sqlite_master where type = 'table'").fetchall():
    online.execute(f'delete from "{table}"')
online.commit()
out["online_empty"] = probe()
for (table,) in online.execute("select name from sqlite_master where type = 'table'").fetchall():
    online.execute(f'drop table "{table}"')  # every read fails ("no such table")
online.commit()
out["online_gone"] = probe()
fresh = Forecaster()  # a worker started now: nothing to keep
client = TestClient(create_app(lambda: fresh))
out["new_worker"] = probe()
print("RESULT " + json.dumps(out))
"""


def test_a_refresh_that_finds_nothing_keeps_serving_and_readiness_follows_predict(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env |= {
        "CANDLECAST_HOME": str(tmp_path / "home"),
        "BENTOML_HOME": str(tmp_path / "home" / "bentoml"),
        "CANDLECAST_SERVICE_PORT": "9",  # nothing listens: announcements fail quietly
    }
    done = subprocess.run(
        [sys.executable, "-c", SCENARIOS],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))

    healthy = out["healthy"]
    assert healthy["predict"] == 200 and healthy["ready"] == [200, True]
    assert healthy["refresh_error"] is None
    for fault in ("store_moved", "online_empty", "online_gone"):
        state = out[fault]
        assert state["refresh_error"], state  # said, not hidden
        assert state["refresh_version"] == healthy["refresh_version"], state
        assert state["predict"] == 200 and state["predicted"] == healthy["predicted"], state
        assert state["ready"] == [200, True], state
    assert out["store_back"]["predict"] == 200 and out["store_back"]["refresh_error"] is None
    assert out["online_gone"]["online_store"] == "unavailable"  # said, while answering
    # nothing in memory and nothing in the stores: not ready, and /predict says so too
    assert out["new_worker"]["predict"] == 503 and out["new_worker"]["ready"] == [503, False]
