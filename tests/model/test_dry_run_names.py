"""A dry run's MLflow runs say so in their names, and a dry run and a real run of the same
window never reuse each other's runs (a real champion's run is never named "dry run")."""

import mlflow
import pytest

from candlecast.modeling import registry, training
from tests.helpers import btc_pair, settings_in
from tests.model.test_promotion import END, frame

pytestmark = pytest.mark.slow  # trains a model in MLflow


def names(settings, parent: str) -> dict[str, str]:
    """The parent's name and its children's, by kind ("" for the parent)."""
    client = mlflow.MlflowClient()
    experiment = registry.experiment_id(btc_pair().stream, settings)
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    found = {"": client.get_run(parent).info.run_name}
    return found | {run.data.tags["kind"]: run.info.run_name for run in children}


def test_a_dry_runs_training_and_kind_runs_are_named_dry_run(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair(kinds=["lightgbm"])
    data = frame(5, signal=0.8)
    dry = training.prepare(pair, END, settings, frame=data, dry_run=True)
    training.fit_one(pair, dry, "lightgbm", settings)
    assert names(settings, dry.parent_run_id) == {
        "": "train-20220101T0000 (dry run)",
        "lightgbm": "lightgbm-20220101T0000 (dry run)",
    }
    real = training.prepare(pair, END, settings, frame=data)
    assert not real.reused and real.parent_run_id != dry.parent_run_id
    training.fit_one(pair, real, "lightgbm", settings)
    assert names(settings, real.parent_run_id) == {
        "": "train-20220101T0000",
        "lightgbm": "lightgbm-20220101T0000",
    }
    again = training.prepare(pair, END, settings, frame=data, dry_run=True)
    assert again.reused and again.parent_run_id == dry.parent_run_id and again.dry_run
