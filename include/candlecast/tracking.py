"""MLflow: where runs go, what registered models are called, the persistence model."""

from __future__ import annotations

import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from candlecast.config import PairConfig
from candlecast.settings import Settings, get_settings

HOLDOUT_ARTIFACT = "holdout/holdout.parquet"
CHAMPION = "champion"
CHALLENGER = "challenger"


class PersistenceModel(PythonModel):
    """The "no change" forecast: predicts a next-candle log return of 0."""

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


def experiment_id(pair: PairConfig, settings: Settings | None = None) -> str:
    """The pair's experiment, created with artifacts under the data directory if new."""
    settings = settings or get_settings()
    name = f"candlecast-{pair.key}"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.mlflow_tracking_uri is None:
        location = (settings.paths.mlflow_artifacts / pair.key).as_uri()
    tags = {"pair": pair.symbol, "exchange": pair.exchange, "timeframe": pair.timeframe}
    return mlflow.create_experiment(name, artifact_location=location, tags=tags)


def model_name(pair: PairConfig) -> str:
    """One registered model per pair; versions of every kind compete for ``champion``."""
    return f"{pair.key}_forecaster"


def load_holdout(run_id: str) -> pd.DataFrame:
    """The holdout frame (features, target, event_timestamp) a training run scored on."""
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_ARTIFACT)
    return pd.read_parquet(local)
