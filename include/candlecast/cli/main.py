"""The ``candlecast`` entry point: the app with every command group registered."""

from candlecast.cli import models  # noqa: F401 - registers models, promote, rollback
from candlecast.cli.app import app

__all__ = ["app"]
