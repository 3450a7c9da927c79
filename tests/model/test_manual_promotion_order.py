"""`candlecast promote` and `rollback` follow the pipeline's order: export with parity, then
deploy and smoke test, then the alias. A version whose export fails parity, or whose deploy
fails its smoke test, leaves the champion alias and the served model as they were, and the
CLI prints no champion move.

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
import json, os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlflow import MlflowClient
from typer.testing import CliRunner

from candlecast.cli.main import app
from candlecast.modeling import registry
from candlecast.orchestration import stages
from candlecast.serving import deploy as bento
from candlecast.settings import get_settings

pair = stages.with_training(stages.pair_config("BTC/USD"), ["lightgbm"], 30)
end = datetime(2022, 3, 1, tzinfo=UTC)
stages.backfill(pair, end - timedelta(days=40), end)
stages.materialize(pair, end - timedelta(days=1), end)


def state():
    registry.configure()
    champion = registry.champion(MlflowClient(), pair.stream)
    return {"champion": str(champion.version) if champion else None,
            "served": bento.deployed_tag(pair)}


def cli(*args, **env):
    os.environ.update(env)
    try:
        done = CliRunner().invoke(app, [args[0], "--pair", "BTC/USD", *args[1:]])
    finally:
        for name in env:
            del os.environ[name]
    return {"code": done.exit_code, "output": " ".join(done.output.split()), "state": state()}


out = {}
trained = stages.train(pair, end)
decision = stages.promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
stages.deploy(pair, stages.export(pair, decision), decision)
out["first"] = state()
other = stages.with_training(pair, ["lightgbm"], 25)
again = stages.train(other, end)
decided = stages.promote(other, again.challenger.run_id, again.challenger.model_uri)
out["other"] = decided.challenger_version

version = out["other"]
out["parity"] = cli("promote", "--version", version, "-r", "try", CANDLECAST_PARITY_TOLERANCE="-1")
out["promoted"] = cli("promote", "--version", version, "-r", "audit")
# the version to roll back to no longer loads: its file changed since it was exported
old = pair.stream.model_dir(get_settings().paths.models, out["first"]["champion"])
(old / "model.onnx").write_bytes(b"not an onnx graph")
out["rollback"] = cli("rollback", "-r", "undo")
print("RESULT " + json.dumps(out))
"""


def test_a_manual_promotion_that_fails_moves_nothing(tmp_path):
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
    first, version = out["first"], out["other"]
    assert first["champion"] is not None and first["champion"] != version

    parity = out["parity"]
    assert parity["code"] == 1 and "parity" in parity["output"].lower(), parity
    assert "champion v" not in parity["output"]
    assert parity["state"] == first

    promoted = out["promoted"]
    assert promoted["code"] == 0, promoted
    assert f"champion v{first['champion']} -> v{version}" in promoted["output"]
    assert promoted["state"]["champion"] == version
    assert promoted["state"]["served"] not in (None, first["served"])

    rollback = out["rollback"]
    assert rollback["code"] == 1 and "champion v" not in rollback["output"], rollback
    assert rollback["state"] == promoted["state"]
