"""The ``candlecast`` entry point: the app with every command group registered."""

from candlecast.cli import (  # noqa: F401
    airflow_local,
    bento,
    dvc,
    evaluate,
    models,
    monitor,
    replay,
)
from candlecast.cli.app import app

__all__ = ["app"]
