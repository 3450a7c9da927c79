"""The URLs of a stream's pages in the platform's UIs, from the configured base URLs.

One place for them, read by the Airflow plugin's links (:mod:`candlecast.orchestration.links`)
and the Grafana dashboards' links (:mod:`candlecast.monitoring.dashboards`). MLflow's UI
addresses experiments by id: with the id unknown, the experiment link is the experiment list
searched for the name, which always works.
"""

from __future__ import annotations

import urllib.parse

from candlecast.names import Stream
from candlecast.settings import Settings


def _ui(settings: Settings) -> str:
    return settings.mlflow_ui_url.rstrip("/")


def experiment_url(stream: Stream, settings: Settings, found_id: str | None = None) -> str:
    """The experiment's page, or (id unknown) the experiment list searched for its name."""
    if found_id is not None:
        return f"{_ui(settings)}/#/experiments/{found_id}"
    query = urllib.parse.urlencode({"experimentSearchFilter": stream.experiment})
    return f"{_ui(settings)}/#/experiments?{query}"


def run_url(settings: Settings, run_id: str, found_id: str | None) -> str:
    """A run's page; MLflow's UI resolves ``#/runs/<id>`` itself when the experiment is
    unknown."""
    if found_id is not None:
        return f"{_ui(settings)}/#/experiments/{found_id}/runs/{run_id}"
    return f"{_ui(settings)}/#/runs/{run_id}"


def model_url(stream: Stream, settings: Settings) -> str:
    return f"{_ui(settings)}/#/models/{urllib.parse.quote(stream.registered_model)}"


def service_url(settings: Settings) -> str:
    """The prediction service's documentation page (it works offline)."""
    return f"{settings.service_base_url.rstrip('/')}/docs"


def dashboard_url(stream: Stream, settings: Settings) -> str:
    return f"{settings.grafana_url.rstrip('/')}/d/{stream.dashboard_uid}"


def dag_url(dag_id: str, settings: Settings) -> str:
    """A DAG's page in the Airflow UI (its grid of runs)."""
    return f"{settings.airflow_url.rstrip('/')}/dags/{dag_id}"
