"""The promotion gate against a real MLflow store, on training frames with known structure."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from candlecast.features.engineering import ENTITY, FEATURE_COLUMNS
from candlecast.modeling import registry, training
from candlecast.modeling.promotion import promote
from tests.helpers import REPO, btc_pair, settings_in

pytestmark = pytest.mark.slow

END = datetime(2022, 1, 1, tzinfo=UTC)
LATER = END + timedelta(days=40)  # the last 25 days of a frame ending here are after END


def frame(seed: int, signal: float, end: datetime = END) -> pd.DataFrame:
    """Features like the real ones; target = signal * ret_1 + noise."""
    rng = np.random.default_rng(seed)
    n = 3000
    data = pd.DataFrame(
        rng.normal(0, 0.01, size=(n, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS
    )
    data = data.astype("float32")  # the feature store's dtype
    data["target"] = signal * data["ret_1"].astype("float64") + rng.normal(0, 0.002, n)
    times = pd.date_range(end=end, periods=n, freq="h", tz="UTC")
    data.insert(0, "event_timestamp", times)
    data.insert(0, ENTITY, "replay:BTC/USD")
    data["candle_ts"] = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1ms") - 3_600_000
    return data


def champion(settings, pair):
    registry.configure(settings)
    return MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "champion")


def train_and_promote(settings, pair, data, end=END):
    result = training.fit_and_log(pair, data, end, settings)
    challenger = result.challenger
    return result, promote(pair, challenger.run_id, challenger.model_uri, settings)


def test_model_that_beats_persistence_significantly_is_promoted(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    result, decision = train_and_promote(settings, pair, frame(1, signal=0.8))
    assert decision.outcome == "promoted"
    assert decision.scores["challenger"] < decision.scores["persistence"]
    for comparison in decision.evidence["challenger_vs_persistence"]:
        assert comparison["p_value"] < 0.05 and comparison["metric"] in ("rmse", "mae")
    version = champion(settings, pair)
    assert str(version.version) == decision.challenger_version
    assert version.tags["kind"] == "lightgbm"
    client = MlflowClient()
    run = client.get_run(result.challenger.run_id)
    assert run.data.tags["promotion.outcome"] == "promoted"
    assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    parent = client.get_run(result.parent_run_id)
    assert run.info.experiment_id == parent.info.experiment_id  # children beside their parent
    assert not (REPO / "mlruns").exists()  # nothing written into the working directory
    assert client.get_run(result.parent_run_id).data.tags["promotion.outcome"] == "promoted"
    assert {"holdout_rmse", "persistence_rmse", "drift_rmse", "persistence_mae"} <= set(
        run.data.metrics
    )
    # both fits are recorded; the served one (registered) is the refit on the whole window
    logged = {m.name for m in client.search_logged_models(experiment_ids=[run.info.experiment_id])}
    assert {"model", "holdout_fit"} <= logged
    assert version.source.endswith(result.challenger.model_uri.rsplit("/", 1)[-1])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/feature_importance.png" in artifacts
    assert run.data.tags["feature_service"] == "forecast_1h_v1"


def test_noise_makes_persistence_the_champion_and_says_no_demonstrated_edge(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    train_and_promote(settings, pair, frame(1, signal=0.8))
    _, decision = train_and_promote(settings, pair, frame(2, signal=0.0, end=LATER), LATER)
    assert decision.outcome == "persistence"
    assert "no demonstrated edge" in decision.reason
    # the old champion was re-scored on the new holdout only (all of it is after its data)
    assert decision.evidence["champion_vs_persistence"] is not None
    assert decision.scores["champion"] > decision.scores["persistence"]
    version = champion(settings, pair)
    assert version.tags["kind"] == "persistence"
    assert str(version.version) not in (decision.challenger_version, "1")
    # a persistence champion is beaten by the next challenger that shows an edge
    later = LATER + timedelta(days=40)
    _, third = train_and_promote(settings, pair, frame(3, signal=0.8, end=later), later)
    assert third.outcome == "promoted"


def test_a_model_that_wins_by_noise_only_is_not_promoted(tmp_path):
    settings = settings_in(tmp_path)
    pair = btc_pair(training={"train_days": 60, "params": {"lightgbm": {"num_leaves": 16}}})
    _, decision = train_and_promote(settings, pair, frame(5, signal=0.0))
    assert decision.outcome == "persistence"
    assert champion(settings, pair).tags["kind"] == "persistence"


def test_weaker_challenger_keeps_the_champion(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    _, first = train_and_promote(settings, pair, frame(3, signal=0.8))
    weak = btc_pair(training={"train_days": 60, "params": {"lightgbm": {"n_estimators": 5}}})
    _, second = train_and_promote(settings, weak, frame(4, signal=0.8, end=LATER), LATER)
    assert second.outcome == "kept_champion"
    assert second.scores["champion"] < second.scores["challenger"]
    assert str(champion(settings, pair).version) == first.challenger_version
    alias = MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "challenger")
    assert str(alias.version) == second.challenger_version


def test_an_earlier_interval_run_after_a_later_one_never_moves_the_champion(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    _, later = train_and_promote(settings, pair, frame(6, signal=0.8, end=LATER), LATER)
    _, earlier = train_and_promote(settings, pair, frame(7, signal=0.9), END)
    assert earlier.outcome == "kept_champion" and "newer data" in earlier.reason
    assert str(champion(settings, pair).version) == later.challenger_version


def test_primary_metric_is_configurable(tmp_path):
    settings, pair = settings_in(tmp_path, primary_metric="mae"), btc_pair()
    _, decision = train_and_promote(settings, pair, frame(4, signal=0.8))
    assert decision.metric == "mae"
    mae = next(c for c in decision.evidence["challenger_vs_persistence"] if c["metric"] == "mae")
    assert decision.scores["challenger"] == pytest.approx(mae["score"])
