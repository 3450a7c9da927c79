"""A persistence champion's registered version points at persistence's own run (the MLflow
UI's "Source Run"), not at the learned challenger that lost; export reads it like any run."""

import pytest
from mlflow import MlflowClient

from candlecast.modeling import onnx_export, registry
from candlecast.modeling.promotion import promote
from tests.helpers import btc_pair, settings_in
from tests.model.test_promotion import champion, frame, train_and_promote

pytestmark = pytest.mark.slow  # trains a model in MLflow


def test_a_persistence_champions_source_run_is_its_own(tmp_path):
    settings = settings_in(tmp_path)
    pair = btc_pair(kinds=["lightgbm"])
    result, decision = train_and_promote(settings, pair, frame(5, signal=0.0))
    assert decision.outcome == "persistence"
    version = champion(settings, pair)
    client = MlflowClient()
    challenger = client.get_run(result.challenger.run_id)
    source = client.get_run(version.run_id)
    assert version.tags["kind"] == "persistence"
    assert version.run_id != challenger.info.run_id  # the UI's link opens persistence's run
    assert source.info.run_name == "persistence-20220101T0000"
    assert source.data.tags["kind"] == "persistence"
    for tag in ("mlflow.parentRunId", "interval_end", "data.last_event"):
        assert source.data.tags[tag] == challenger.data.tags[tag]
    own = registry.holdout_metrics(source.data.metrics, "persistence")
    assert own["holdout_rmse"] == challenger.data.metrics["persistence_rmse"]
    # a second decision on the same challenger reuses the run and the version
    again = promote(pair, challenger.info.run_id, result.challenger.model_uri, settings)
    assert again.champion_version == str(version.version)
    baseline_runs = client.search_runs(
        [challenger.info.experiment_id], "tags.`run.role` = 'baseline'"
    )
    assert [r.info.run_id for r in baseline_runs] == [version.run_id]
    exported = onnx_export.export_champion(pair, settings)
    assert exported.kind == "persistence" and exported.run_id == version.run_id
    assert exported.interval_half_width is not None and exported.interval_half_width > 0
