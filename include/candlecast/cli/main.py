"""The ``candlecast`` entry point: the app with every command group registered."""

from candlecast.cli import airflow_local, bento, dvc, evaluate, models, monitor  # noqa: F401
from candlecast.cli.app import app

__all__ = ["app"]
