"""Monitoring's own infrastructure settings (prefix ``CANDLECAST_``), read lazily.

Kept beside the checks rather than in :mod:`candlecast.settings` because only monitoring
reads them: where the metrics table lives and where notifications go.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from candlecast.settings import Settings, get_settings, read_settings


class MonitoringSettings(BaseSettings):
    """Where monitoring writes its figures and whom it tells."""

    model_config = SettingsConfigDict(
        env_prefix="CANDLECAST_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    metrics_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metrics table (postgresql+psycopg://... in "
        "production); default: SQLite under the data directory.",
    )
    webhook_url: str | None = Field(
        default=None, description="Slack-compatible incoming webhook for drift notifications."
    )
    webhook_timeout_s: float = Field(
        default=3.0, gt=0, description="A webhook slower than this is given up on (logged)."
    )

    def database_url(self, settings: Settings | None = None) -> str:
        """The metrics table's URL: ``metrics_url`` or SQLite under the data directory."""
        if self.metrics_url:
            return self.metrics_url
        home = (settings or get_settings()).paths.home
        return f"sqlite:///{home / 'monitoring' / 'metrics.db'}"


def get_monitoring_settings() -> MonitoringSettings:
    return read_settings(MonitoringSettings)
