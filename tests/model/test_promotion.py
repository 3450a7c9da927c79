"""The promotion gate against a real MLflow store, on training frames with known structure."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from candlecast.features.engineering import ENTITY, FEATURE_COLUMNS
from candlecast.modeling import registry, training
from candlecast.modeling.promotion import promote
from tests.helpers import btc_pair, settings_in

END = datetime(2022, 1, 1, tzinfo=UTC)


def frame(seed: int, signal: float) -> pd.DataFrame:
    """Features like the real ones; target = signal * ret_1 + noise."""
    rng = np.random.default_rng(seed)
    n = 3000
    data = pd.DataFrame(
        rng.normal(0, 0.01, size=(n, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS
    )
    data = data.astype("float32")  # the feature store's dtype
    data["target"] = signal * data["ret_1"].astype("float64") + rng.normal(0, 0.002, n)
    data.insert(0, "event_timestamp", pd.date_range(end=END, periods=n, freq="h", tz="UTC"))
    data.insert(0, ENTITY, "replay:BTC/USD")
    return data


def champion(settings, pair):
    registry.configure(settings)
    return MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "champion")


def train_and_promote(settings, pair, data):
    result = training.fit_and_log(pair, data, END, settings).challenger
    return result, promote(pair, result.run_id, result.model_uri, settings)


def test_model_that_beats_persistence_is_promoted_and_decision_logged(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    result, decision = train_and_promote(settings, pair, frame(1, signal=0.8))
    assert decision.outcome == "promoted"
    assert decision.scores["challenger"] < decision.scores["persistence"]
    version = champion(settings, pair)
    assert str(version.version) == decision.challenger_version
    assert version.tags["kind"] == "lightgbm"
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["promotion.outcome"] == "promoted"
    assert "beats persistence" in run.data.tags["promotion.reason"]
    assert {
        "holdout_rmse",
        "holdout_mae",
        "holdout_directional_accuracy",
        "persistence_rmse",
    } <= set(run.data.metrics)


def test_noise_makes_persistence_the_champion(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    train_and_promote(settings, pair, frame(1, signal=0.8))
    _, decision = train_and_promote(settings, pair, frame(2, signal=0.0))
    assert decision.outcome == "persistence"
    # the old champion is re-scored on the new holdout, where it is worse than no change
    assert decision.scores["champion"] > decision.scores["persistence"]
    version = champion(settings, pair)
    assert version.tags["kind"] == "persistence"
    assert str(version.version) not in (decision.challenger_version, "1")
    assert "no trained model beats persistence" in decision.reason
    # the persistence champion is re-scored like any champion when the next challenger comes
    _, third = train_and_promote(settings, pair, frame(3, signal=0.8))
    assert third.scores["champion"] == pytest.approx(third.scores["persistence"])
    assert third.outcome == "promoted"


def test_weaker_challenger_keeps_the_champion(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    data = frame(3, signal=0.8)
    _, first = train_and_promote(settings, pair, data)
    weak = btc_pair(training={"train_days": 60, "params": {"lightgbm": {"n_estimators": 20}}})
    _, second = train_and_promote(settings, weak, data)
    assert second.scores["challenger"] < second.scores["persistence"]
    assert second.scores["challenger"] > second.scores["champion"]
    assert second.outcome == "kept_champion"
    assert str(champion(settings, pair).version) == first.challenger_version
    alias = MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "challenger")
    assert str(alias.version) == second.challenger_version


@pytest.mark.parametrize("metric", ["mae"])
def test_primary_metric_is_configurable(tmp_path, metric):
    settings, pair = settings_in(tmp_path, primary_metric=metric), btc_pair()
    _, decision = train_and_promote(settings, pair, frame(4, signal=0.8))
    assert decision.metric == metric and "mae=" in decision.reason
