"""Infrastructure settings, read from environment variables (prefix ``CANDLECAST_``).

Nothing is read at import: call :func:`get_settings` where a setting is needed, so a
process (or a test) that changes the environment sees the change.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from candlecast.errors import SettingsError

S = TypeVar("S", bound=BaseSettings)

#: The repository root (the package is installed editable from ``include/``).
REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Where state lives and which services the platform talks to."""

    model_config = SettingsConfigDict(
        env_prefix="CANDLECAST_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    home: Path = Field(
        default=Path("~/.candlecast"),
        description="Data directory holding every piece of state the platform writes.",
    )
    pairs: Path = Field(
        default=REPO_ROOT / "config" / "pairs.yaml",
        description="The pair config file (YAML).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default: SQLite store under home."
    )
    exchange_url: str | None = Field(
        default=None,
        description="Base URL replacing live exchanges' API host (a local exchange server).",
    )
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "localhost:6379"
    service_host: str = "127.0.0.1"
    service_port: int = 3000
    airflow_host: str = Field(
        default="127.0.0.1", description="Where the embedded Airflow API server listens."
    )
    airflow_port: int = Field(default=8080, description="Port of the embedded Airflow UI/API.")
    airflow_database: str | None = Field(
        default=None,
        description=(
            "The embedded Airflow's metadata database as a SQLAlchemy URL (e.g. "
            "postgresql://user@host/db, for hundreds of streams); None: a SQLite file under "
            "the data directory."
        ),
    )
    mlflow_ui_url: str = Field(
        default="http://127.0.0.1:5000", description="MLflow UI, for links from Airflow."
    )
    service_url: str | None = Field(
        default=None,
        description="Prediction service base URL for links; default http://host:port above.",
    )
    grafana_url: str = Field(
        default="http://127.0.0.1:3001", description="Grafana, for links to pair dashboards."
    )
    primary_metric: Literal["rmse", "mae"] = "rmse"
    parity_tolerance: float = Field(
        default=1e-5, description="Max abs difference allowed between ONNX and native outputs."
    )

    fit_threads: int = Field(
        default=1,
        ge=1,
        description="Threads one model fit uses (LightGBM num_threads; torch kinds use one).",
    )
    training_slots: int | None = Field(
        default=None,
        ge=1,
        description="Fits at once (the candlecast_training pool); default cores / fit_threads.",
    )

    @property
    def training_pool_slots(self) -> int:
        """Concurrent fits: :attr:`training_slots`, else as many as the cores this process may
        run on hold fits of :attr:`fit_threads` threads (so parallel fits never oversubscribe
        the cores and thrash)."""
        return self.training_slots or training_slots_for(usable_cores(), self.fit_threads)

    @cached_property
    def paths(self) -> Paths:
        return Paths(self.home.expanduser().resolve())

    @property
    def service_base_url(self) -> str:
        return self.service_url or f"http://{self.service_host}:{self.service_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.airflow_host}:{self.airflow_port}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.paths.mlflow / 'mlflow.db'}"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def training_slots_for(cores: int, fit_threads: int) -> int:
    """How many fits of ``fit_threads`` threads run at once on ``cores`` cores (at least one)."""
    return max(1, cores // fit_threads)


class Paths:
    """The layout of the data directory. Creating directories is left to the writers."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.raw = home / "raw"
        self.validated = home / "validated"
        self.quarantine = home / "quarantine"
        self.data_docs = home / "data_docs"
        self.features = home / "features"
        self.feast = home / "feast"
        self.mlflow = home / "mlflow"
        self.mlflow_artifacts = self.mlflow / "artifacts"
        self.models = home / "models"
        self.training_sets = home / "training_sets"
        self.bentoml = home / "bentoml"
        self.airflow = home / "airflow"
        self.logs = home / "logs"


def get_settings() -> Settings:
    """Read the settings from the environment now."""
    return read_settings(Settings)


def read_settings(cls: type[S]) -> S:
    """``cls()`` read from the environment, with a bad value as one line naming its variable.

    Raises:
        SettingsError: e.g. ``CANDLECAST_PARITY_TOLERANCE='inf': Input should be a finite
            number``.
    """
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = [
            f"{prefix}{'_'.join(str(part) for part in error['loc']).upper()}="
            f"{error.get('input')!r}: {error['msg']}"
            for error in exc.errors()
        ]
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
