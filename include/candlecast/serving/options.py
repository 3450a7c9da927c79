"""Settings of the prediction service process (``CANDLECAST_SERVICE_*``), read lazily."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceOptions(BaseSettings):
    """How the service runs; each default was measured (bench/bench_serving.py)."""

    model_config = SettingsConfigDict(
        env_prefix="CANDLECAST_SERVICE_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    workers: int = Field(default=1, ge=1, description="BentoML worker processes")
    refresh_seconds: float = Field(
        default=60.0, gt=0, description="Periodic check of every stream (safety net)"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Larger request bodies get 413"
    )
    access_log: bool = Field(default=True, description="One JSON line per request")
    store_timeout_seconds: float = Field(
        default=1.0, gt=0, description="Connect and read timeout of an online store read"
    )
    store_cooldown_seconds: float = Field(
        default=5.0,
        gt=0,
        description="After a failed online store read, answer from memory "
        "this long before trying the store again",
    )
    forecast_log_max_mb: float | None = Field(
        default=None, gt=0, description="Cap on the forecast log's size (None: the disk's)"
    )
