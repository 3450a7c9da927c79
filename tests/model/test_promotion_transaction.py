"""Promotion is a transaction: a new version becomes champion only after export, parity,
deploy and the smoke test succeed; after a failure at any of those points the previous
champion stays champion and stays served, and re-running the same interval on the same data
reuses its training run and its registered version.

Runs in a subprocess with its own data directory (the stages read settings from the
environment, and BentoML fixes its store at first use).
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
import dataclasses, json, os, shutil, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlflow import MlflowClient

from candlecast.errors import ParityError, UnknownVersionError
from candlecast.modeling import registry
from candlecast.modeling.onnx_export import ExportedModel
from candlecast.orchestration import stages
from candlecast.serving import deploy as bento

pair = stages.with_training(stages.pair_config("BTC/USD"), ["lightgbm"], 30)
end = datetime(2022, 3, 1, tzinfo=UTC)
stages.backfill(pair, end - timedelta(days=40), end)
stages.materialize(pair, end - timedelta(days=1), end)


def state():
    registry.configure()
    champion = registry.champion(MlflowClient(), pair.stream)
    versions = MlflowClient().search_model_versions(f"name = '{pair.stream.registered_model}'")
    return {
        "champion": str(champion.version) if champion else None,
        "served": bento.deployed_tag(pair),
        "versions": len(versions),
    }


out = {}
# 1. a first champion, through every step
trained = stages.train(pair, end)
decision = stages.promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
out["first_undecided"] = state()
exported = stages.export(pair, decision)
stages.deploy(pair, exported, decision)
out["first"] = state()

# 2. a challenger that must win (another window), then failures at each point
other = stages.with_training(pair, ["lightgbm"], 25)
trained = stages.train(other, end)
decided = stages.promote(other, trained.challenger.run_id, trained.challenger.model_uri)
forced = dataclasses.replace(
    decided, champion_version=decided.challenger_version, changes_champion=True
)
out["second_decided"] = state()

os.environ["CANDLECAST_PARITY_TOLERANCE"] = "-1"  # no difference can pass
try:  # the winner is not exported: the champion is, and stays
    fell_back = stages.export(other, forced)
    out["parity"] = [fell_back.version, fell_back.fallback]
except ParityError as exc:
    out["parity"] = type(exc).__name__
del os.environ["CANDLECAST_PARITY_TOLERANCE"]
out["after_parity_failure"] = state()

exported = stages.export(other, forced)
broken = Path(sys.argv[1]) / "broken"
shutil.copytree(Path(exported.path).parent, broken)
(broken / "model.onnx").write_bytes(b"not an onnx graph")
corrupt = exported.model_copy(
    update={"path": str(broken / "model.onnx"), "onnx_sha256": "0" * 64}
)
try:
    stages.deploy(other, corrupt, forced)
    out["smoke"] = "no error"
except Exception as exc:
    out["smoke"] = type(exc).__name__
out["after_smoke_failure"] = state()

missing = dataclasses.replace(forced, champion_version="999")
try:
    stages.deploy(other, exported, missing)
    out["commit"] = "no error"
except UnknownVersionError as exc:
    out["commit"] = type(exc).__name__
out["after_commit_failure"] = state()

# 3. the same interval on the same data again: same runs, same version
again = stages.train(other, end)
out["rerun_same_run"] = again.challenger.run_id == trained.challenger.run_id
redecided = stages.promote(other, again.challenger.run_id, again.challenger.model_uri)
out["rerun_same_version"] = redecided.challenger_version == decided.challenger_version
out["after_rerun"] = state()

# 4. and when everything succeeds, the forced winner becomes champion and is served
stages.deploy(other, exported, forced)
out["committed"] = state()
out["committed_version"] = forced.champion_version
print("RESULT " + json.dumps(out))
"""


def test_a_failed_promotion_leaves_the_previous_champion_champion_and_served(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env |= {
        "CANDLECAST_HOME": str(tmp_path / "home"),
        "BENTOML_HOME": str(tmp_path / "home" / "bentoml"),
        "CANDLECAST_SERVICE_PORT": "9",  # nothing listens: announcements fail quietly
    }
    done = subprocess.run(
        [sys.executable, "-c", SCENARIOS, str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))

    # deciding moves nothing: the alias waits for the deploy
    assert out["first_undecided"]["champion"] is None and out["first_undecided"]["served"] is None
    first = out["first"]
    assert first["champion"] is not None and first["served"] is not None
    assert out["second_decided"]["champion"] == first["champion"]
    assert out["second_decided"]["served"] == first["served"]

    version, fallback = out["parity"]
    assert version == first["champion"] and "failed ONNX parity" in fallback
    assert out["after_parity_failure"] | {"versions": 0} == first | {"versions": 0}
    assert out["smoke"] != "no error"
    assert out["after_smoke_failure"] | {"versions": 0} == first | {"versions": 0}
    assert out["commit"] == "UnknownVersionError"
    assert out["after_commit_failure"] | {"versions": 0} == first | {"versions": 0}

    assert out["rerun_same_run"] and out["rerun_same_version"]
    assert out["after_rerun"]["versions"] == out["second_decided"]["versions"]

    assert out["committed"]["champion"] == out["committed_version"]
    assert out["committed"]["served"] != first["served"]
