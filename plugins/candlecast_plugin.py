"""candlecast's Airflow plugin: from each pair's DAGs and task instances to its MLflow
experiment, run and registered model, the prediction service and its Grafana dashboard.

Thin: the links are built by ``candlecast.orchestration.links`` and shown through
``candlecast.orchestration.ui`` (extra links on task instances, a "Pair links" tab on DAGs).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from candlecast.orchestration import ui


class CandlecastPlugin(AirflowPlugin):
    name = "candlecast"
    global_operator_extra_links = ui.operator_links()
    external_views = ui.external_views()
    fastapi_apps = ui.fastapi_apps()
