"""The ``candlecast`` entry point: the app with every command group registered."""

from candlecast.cli import dvc, evaluate, models  # noqa: F401 - register their commands
from candlecast.cli.app import app

__all__ = ["app"]
