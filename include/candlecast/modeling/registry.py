"""MLflow: where runs go, the experiment of a stream, aliases, logged holdouts, cards.

The one module of candlecast that imports MLflow (import-linter checks it; the model kinds'
MLflow flavours are the listed exceptions): everything else logs and reads runs through the
names this module exports, so MLflow's API changes land in one place. Every name (experiment,
registered model) comes from :class:`~candlecast.names.Stream`, every key from
:mod:`.mlflow_keys`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from filelock import FileLock
from mlflow import (
    MlflowClient,
    log_artifact,
    log_dict,
    log_figure,
    log_input,
    log_metric,
    log_metrics,
    log_params,
    log_text,
    search_runs,
    set_tag,
    start_run,
)
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from candlecast.errors import NoChampionError, UnknownVersionError
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.card import ModelCard
from candlecast.modeling.mlflow_keys import CHALLENGER, CHAMPION, HOLDOUT_ARTIFACT
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "HOLDOUT_ARTIFACT",
    "MlflowClient",
    "MlflowException",
    "log_artifact",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_params",
    "log_text",
    "search_runs",
    "set_tag",
    "start_run",
]


def dataset_from_pandas(frame: pd.DataFrame, name: str, targets: str) -> Any:
    """An MLflow dataset of a frame (for :func:`log_input`)."""
    from mlflow.data.pandas_dataset import from_pandas

    return from_pandas(frame, name=name, targets=targets)


def log_onnx_model(model: Any, name: str) -> Any:
    """Log an ONNX ModelProto as the active run's model ``name``; returns its ModelInfo."""
    import mlflow.onnx

    return mlflow.onnx.log_model(model, name=name)


def tracking_client(uri: str) -> MlflowClient:
    """A client of the tracking and registry store at ``uri`` (not the configured one)."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class ConstantPyfunc(PythonModel):
    """A constant-return baseline kind (persistence: 0, drift: the mean) as an MLflow pyfunc,
    so the MLflow UI and ``mlflow models serve`` can use it. Logged as code
    (:data:`CONSTANT_MODEL_CODE`) with its value in the model config, not cloudpickled."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def load_context(self, context: Any) -> None:
        config = getattr(context, "model_config", None) or {}
        self.value = float(config.get("value", getattr(self, "value", 0.0)))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.full(len(model_input), getattr(self, "value", 0.0), dtype=np.float64)


def pip_requirements(*packages: str) -> list[str]:
    """Pinned requirements of a logged model, given explicitly: MLflow's own inference
    imports the model in a subprocess (seconds) and drags in every installed package."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", *packages)]


#: The file that defines a constant baseline's pyfunc (MLflow's "models from code").
CONSTANT_MODEL_CODE = str(Path(__file__).with_name("constant_model.py"))


def route_mlflow_logs() -> None:
    """Send MLflow's log records to the host's logging (Airflow's task log, the CLI's
    handler) instead of the stderr handler MLflow installs on import: Airflow's task runner
    logs a task's stderr at ERROR, so MLflow's ordinary INFO lines ("Registered model ...
    already exists", "Created version") read as errors there."""
    logger = logging.getLogger("mlflow")
    logger.handlers = []
    logger.propagate = True


def import_skops() -> None:
    """Import skops (MLflow's format for LightGBM's scikit-learn models) once, without the
    FutureWarning per scipy ufunc and Airflow compatibility module: at import, skops looks
    every scipy.special ufunc up in every loaded module (``skops.io._utils.whichmodule``),
    and in a task process Airflow's deprecated-name shims (``airflow.utils.timezone`` ...)
    warn on each lookup: about 1,150 lines a fit, none of them about our code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `airflow\.", category=FutureWarning)
        import skops.io  # noqa: F401


def register_model(model_uri: str, name: str, tags: dict[str, Any]) -> Any:
    """``mlflow.register_model``, its progress lines ("Successfully registered model …",
    "Created version …") logged at INFO on the ``mlflow`` logger: MLflow prints them straight
    to stderr (``eprint``), where the CLI shows them on every healthy run and Airflow's task
    runner records stderr as errors. Returns the new ModelVersion."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            return mlflow.register_model(model_uri, name, tags=tags)
    finally:
        for line in printed.getvalue().splitlines():
            if line.strip():
                logging.getLogger("mlflow").info("%s", line)


def import_sql_store() -> None:
    """Import MLflow's SQL store once, without the SQLAlchemy 2.1 deprecation it triggers at
    import (``noload`` in its mappers: MLflow's code, nothing a user can act on). It is the one
    warning a healthy run printed; where a host (Airflow, pytest) has turned deprecation
    warnings back on, the import is the only place it can be silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*``noload``", category=DeprecationWarning)
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def client() -> MlflowClient:
    """A client of the configured tracking store (after :func:`configure`)."""
    return MlflowClient()


def configure(settings: Settings | None = None) -> str:
    """Point MLflow at the configured tracking store; returns the URI."""
    settings = settings or get_settings()
    route_mlflow_logs()
    import_sql_store()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    if settings.mlflow_tracking_uri is None:
        settings.paths.mlflow.mkdir(parents=True, exist_ok=True)
        # MLflow creates and migrates its SQLite store on first use; two processes doing that
        # at once (two `candlecast run` on a fresh home) crash on each other's migrations.
        with FileLock(settings.paths.mlflow / ".create.lock"):
            _create_store(settings.paths.mlflow / "mlflow.db")
            MlflowClient(settings.tracking_uri).search_experiments(max_results=1)
    return settings.tracking_uri


def _create_store(path: Path) -> None:
    """Create the local SQLite store atomically: migrated in a file of its own, then renamed
    into place. A creation cut short (a full disk, a kill) leaves only that file, replaced by
    the next try, never a half-migrated store that fails every later run ("table
    _alembic_tmp_experiment_tags already exists")."""
    if path.exists():
        return
    staged = path.with_name(path.name + ".creating")
    staged.unlink(missing_ok=True)
    MlflowClient(f"sqlite:///{staged}").search_experiments(max_results=1)
    staged.replace(path)


#: The experiment tag MLflow 3's UI reads to open an experiment as model training (runs,
#: metrics, models), not as a GenAI app (traces, evaluations), which it assumes otherwise.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def experiment_id(stream: Stream, settings: Settings | None = None) -> str:
    """The stream's experiment, created with artifacts under the data directory if new."""
    settings = settings or get_settings()
    found = mlflow.get_experiment_by_name(stream.experiment)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:  # made before it was set
            MlflowClient().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        return str(found.experiment_id)
    location = None
    if settings.mlflow_tracking_uri is None:
        location = (settings.paths.mlflow_artifacts / stream.key).as_uri()
    tags = {**stream.run_tags, EXPERIMENT_KIND: MODEL_TRAINING}
    return str(mlflow.create_experiment(stream.experiment, artifact_location=location, tags=tags))


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


def load_card(run_id: str) -> ModelCard | None:
    """The model card a kind's run logged at training (None for a run logged before cards)."""
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{keys.CARD_ARTIFACT}")
    except MlflowException:
        return None
    return ModelCard.model_validate_json(text)


def load_holdout(run_id: str) -> pd.DataFrame:
    """The holdout frame (features, target, event_timestamp) a training run scored on."""
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_ARTIFACT)
    return pd.read_parquet(local)


def holdout_metrics(metrics: dict[str, float], kind: str) -> dict[str, float]:
    """A version's own holdout figures (``holdout_rmse``...) from its run's metrics. A baseline
    version registered on the challenger's run (before baselines had runs of their own) sees
    the challenger's ``holdout_*`` metrics there: a baseline's figures are the run's
    ``<baseline>_*`` ones instead, and persistence, which calls no direction, has no
    directional accuracy."""
    from candlecast.modeling.kinds import BASELINE

    if kind and kind in _baseline_names():
        prefix = f"{kind}_"
        return {
            f"holdout_{name[len(prefix) :]}": value
            for name, value in metrics.items()
            if name.startswith(prefix) and not (kind == BASELINE and "directional" in name)
        }
    return {name: value for name, value in metrics.items() if name.startswith("holdout_")}


def _baseline_names() -> set[str]:
    from candlecast.modeling.kinds import get_kind, kind_names

    return {name for name in kind_names() if get_kind(name).baseline}


def versions(client: MlflowClient, stream: Stream) -> list[dict[str, Any]]:
    """Every registered version of the stream, newest first, with its aliases and, from its
    card, its kind, interval (training window end) and holdout scores, and how it became (or
    did not become) champion (:func:`promotion_record`)."""
    # version_card reads runs through this module: imported here, not at the top (a cycle)
    from candlecast.modeling.version_card import version_card

    name = stream.registered_model
    found = client.search_model_versions(f"name = '{name}'")
    rows = []
    for version in sorted(found, key=lambda v: int(v.version), reverse=True):
        card = version_card(stream, version) if version.run_id else None
        record = promotion_record(client, version)
        rows.append(
            {
                "version": str(version.version),
                "aliases": sorted(client.get_model_version(name, version.version).aliases),
                "kind": card.kind if card else "",
                "interval_end": card.interval_end if card else "",
                "holdout_rmse": card.scores.get("rmse") if card else None,
                "holdout_mae": card.scores.get("mae") if card else None,
                "persistence_rmse": card.baseline_scores.get("rmse") if card else None,
                "outcome": record.outcome,
                "champion_reason": record.champion_reason,
            }
        )
    return rows


@dataclass(frozen=True)
class PromotionRecord:
    """What happened to a registered version after it was trained: the gate's outcome on its
    run (``promoted``, ``kept_champion``, ...; '' before a decision) and why it was last made
    champion ('' if never)."""

    outcome: str
    champion_reason: str


def promotion_record(client: MlflowClient, version: Any) -> PromotionRecord:
    """A version's :class:`PromotionRecord`, from the tags the gate and champion moves write.

    Tags, not the model card: a card is the model's identity and facts, written once when it is
    trained, while these are events that happen to a version afterwards, again and again (a
    later decision on the same run, a manual promote or rollback moving the alias)."""
    run = client.get_run(version.run_id) if version.run_id else None
    outcome = str(run.data.tags.get(keys.PROMOTION_OUTCOME, "")) if run else ""
    return PromotionRecord(outcome, str(version.tags.get(keys.CHAMPION_REASON, "")))


def move_champion(
    client: MlflowClient, stream: Stream, version: str, reason: str, how: str
) -> tuple[str | None, str]:
    """Point ``champion`` at ``version``, recording the previous champion and the reason on
    the version (so :func:`previous_champion` can undo it). Returns (previous, new)."""
    current = champion(client, stream)
    name = stream.registered_model
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise UnknownVersionError(f"{name} has no version {version!r}") from None
    previous = str(current.version) if current is not None else None
    if previous is not None and previous != str(version):
        client.set_model_version_tag(name, version, keys.CHAMPION_PREVIOUS, previous)
    client.set_model_version_tag(name, version, keys.CHAMPION_SET_BY, how)
    client.set_model_version_tag(name, version, keys.CHAMPION_REASON, reason[:5000])
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous, str(version)


def previous_champion(client: MlflowClient, stream: Stream) -> str | None:
    """The version that was champion before the current one (None if not recorded)."""
    current = champion(client, stream)
    return current.tags.get(keys.CHAMPION_PREVIOUS) if current is not None else None
