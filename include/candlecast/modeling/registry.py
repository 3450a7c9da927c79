"""MLflow: where runs go, the experiment of a stream, aliases, logged holdouts.

Every name (experiment, registered model) comes from :class:`~candlecast.names.Stream`.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from candlecast.errors import NoChampionError
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings

HOLDOUT_ARTIFACT = "holdout/holdout.parquet"
CHAMPION = "champion"
CHALLENGER = "challenger"


class PersistencePyfunc(PythonModel):
    """The persistence kind as an MLflow pyfunc: a next-candle log return of 0."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.zeros(len(model_input), dtype=np.float64)


def pip_requirements(*packages: str) -> list[str]:
    """Pinned requirements of a logged model, given explicitly: MLflow's own inference
    imports the model in a subprocess (seconds) and drags in every installed package."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", *packages)]


def configure(settings: Settings | None = None) -> str:
    """Point MLflow at the configured tracking store; returns the URI."""
    settings = settings or get_settings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if settings.mlflow_tracking_uri is None:
        settings.paths.mlflow.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return settings.tracking_uri


def experiment_id(stream: Stream, settings: Settings | None = None) -> str:
    """The stream's experiment, created with artifacts under the data directory if new."""
    settings = settings or get_settings()
    found = mlflow.get_experiment_by_name(stream.experiment)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if settings.mlflow_tracking_uri is None:
        location = (settings.paths.mlflow_artifacts / stream.key).as_uri()
    return str(
        mlflow.create_experiment(
            stream.experiment, artifact_location=location, tags=stream.run_tags
        )
    )


def champion(client: MlflowClient, stream: Stream) -> Any | None:
    """The model version aliased ``champion``, or None."""
    try:
        return client.get_model_version_by_alias(stream.registered_model, CHAMPION)
    except MlflowException:
        return None


def require_champion(client: MlflowClient, stream: Stream) -> Any:
    """The champion version.

    Raises:
        NoChampionError: the stream has none yet.
    """
    found = champion(client, stream)
    if found is None:
        raise NoChampionError(
            f"{stream.label}: no champion in {stream.registered_model}; train and promote first"
        )
    return found


def run_features(client: MlflowClient, run_id: str) -> list[str]:
    """The feature columns a training run's model reads, in order."""
    return str(client.get_run(run_id).data.params["features"]).split(",")


def load_holdout(run_id: str) -> pd.DataFrame:
    """The holdout frame (features, target, event_timestamp) a training run scored on."""
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_ARTIFACT)
    return pd.read_parquet(local)
