"""`candlecast models`, `promote` and `rollback` on a real MLflow registry."""

import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from candlecast.cli.main import app
from candlecast.modeling import registry
from tests.helpers import REPO, btc_pair, settings_in
from tests.model.test_promotion import LATER, frame, train_and_promote

pytestmark = pytest.mark.slow


@pytest.fixture
def history(tmp_path):
    """Two trainings: a promoted model (v1), then noise making persistence champion."""
    settings, pair = settings_in(tmp_path), btc_pair()
    train_and_promote(settings, pair, frame(1, signal=0.8))
    _, decision = train_and_promote(settings, pair, frame(2, signal=0.0, end=LATER), LATER)
    env = {"CANDLECAST_HOME": str(tmp_path), "CANDLECAST_PAIRS": str(REPO / "config/pairs.yaml")}
    return settings, pair, decision, env


def cli(env, *args):
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def champion(settings, pair):
    registry.configure(settings)
    return MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "champion")


def test_models_lists_versions_aliases_and_metrics(history):
    _, _, decision, env = history
    code, out = cli(env, "models", "--pair", "BTC/USD", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert [r["version"] for r in rows] == ["3", "2", "1"]
    by_version = {r["version"]: r for r in rows}
    assert "champion" in by_version[decision.champion_version]["aliases"]
    assert by_version["1"]["kind"] == "lightgbm" and by_version["1"]["holdout_rmse"] > 0
    code, out = cli({**env, "COLUMNS": "80"}, "models", "--pair", "BTC/USD")
    assert code == 0 and "replay_btc_usd_1h_forecaster" in out
    assert "…" not in out  # nothing cut at 80 columns
    assert f"{decision.champion_version}*" in out  # the champion, visibly


def test_promote_and_rollback_move_the_alias_with_a_logged_reason(history):
    settings, pair, _, env = history
    before = champion(settings, pair)
    code, out = cli(
        env, "promote", "--pair", "BTC/USD", "--version", "1", "-r", "audit", "--no-deploy"
    )
    assert code == 0, out
    moved = champion(settings, pair)
    assert str(moved.version) == "1"
    assert moved.tags["champion.reason"] == "audit"
    assert moved.tags["champion.set_by"] == "manual promote"
    assert moved.tags["champion.previous"] == str(before.version)
    # the decision history follows the person's move: later candles are forecast by v1
    from candlecast.modeling import history as decided

    last = decided.read(pair.stream, settings)[-1]
    assert (last.version, last.how, last.changed) == ("1", "manual promote", True)
    code, out = cli(env, "rollback", "--pair", "BTC/USD", "-r", "undo audit", "--no-deploy")
    assert code == 0, out
    assert str(champion(settings, pair).version) == str(before.version)
    last = decided.read(pair.stream, settings)[-1]
    assert (last.version, last.how) == (str(before.version), "manual rollback")


def test_promoting_an_unknown_version_fails_clearly(history):
    _, _, _, env = history
    code, out = cli(env, "promote", "--pair", "BTC/USD", "--version", "99", "-r", "x")
    assert code == 1 and "99" in out
