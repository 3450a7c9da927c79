"""candlecast's Airflow plugin: from each pair's DAGs and task instances to its MLflow
experiment, run and registered model, the prediction service and its Grafana dashboard; the
promotion decision as each train run's note.

Thin: the links are built by ``candlecast.orchestration.links`` and shown through
``candlecast.orchestration.ui`` (extra links on task instances, a "Pair links" tab on DAGs).
Loaded by the scheduler and Celery workers too, where it warms task start-up
(``candlecast.orchestration.preload``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from candlecast.orchestration import notes, preload, ui

# In the scheduler and Celery workers only: the libraries the tasks import, once before forking.
preload.preload()


class CandlecastPlugin(AirflowPlugin):
    name = "candlecast"
    global_operator_extra_links = ui.operator_links()
    external_views = ui.external_views()
    fastapi_apps = ui.fastapi_apps()
    listeners = notes.listeners()
