"""API keys of the prediction service (``CANDLECAST_API_KEYS``, ``CANDLECAST_API_KEYS_FILE``).

Keys are read lazily from the environment, like every setting: a comma-separated list, and/or
a file with one key per line (blank lines and ``#`` comments ignored). No key configured means
the service is open (the laptop default, bound to 127.0.0.1). Keys are compared in constant
time and never logged.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from candlecast.settings import read_settings


class KeySettings(BaseSettings):
    """Where the service's API keys come from."""

    model_config = SettingsConfigDict(
        env_prefix="CANDLECAST_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    api_keys: str = ""
    api_keys_file: Path | None = None


def load_keys(settings: KeySettings | None = None) -> tuple[bytes, ...]:
    """The configured keys (empty: no authentication)."""
    settings = settings or read_settings(KeySettings)
    keys = [k.strip() for k in settings.api_keys.split(",")]
    if settings.api_keys_file is not None:
        lines = settings.api_keys_file.expanduser().read_text().splitlines()
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    return tuple(k.encode() for k in keys if k)


def bearer(header: str | bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value (None if not one)."""
    if not header:
        return None
    raw = header.encode("latin-1") if isinstance(header, str) else header
    scheme, _, token = raw.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def allowed(keys: tuple[bytes, ...], token: bytes | None) -> bool:
    """Whether ``token`` is one of ``keys``; every key is compared, each in constant time, so
    the time taken says nothing about which key (or how much of one) matched."""
    if not keys:
        return True
    found = False
    for key in keys:
        found |= hmac.compare_digest(key, token or b"")
    return found
