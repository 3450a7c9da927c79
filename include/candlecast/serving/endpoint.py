"""Where the running prediction service listens, as it recorded at start.

``candlecast serve --port P`` (and the demo's service) write ``serving/endpoint.json`` under the
data directory: the URL and the pid of the server. Announcements go there while that process
lives, so a service started on another port than ``CANDLECAST_SERVICE_PORT`` still hears about
new features and champions; with no live record, or with ``CANDLECAST_SERVICE_URL`` set (a
service on another host, as in docker-compose), they go to the configured URL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from candlecast.settings import Settings, get_settings


def endpoint_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).paths.home / "serving" / "endpoint.json"


def record_endpoint(url: str, pid: int, settings: Settings | None = None) -> Path:
    """Record that the service of process ``pid`` listens at ``url`` (replaced atomically)."""
    path = endpoint_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps({"url": url, "pid": pid}))
    staged.replace(path)
    return path


def service_url(settings: Settings | None = None) -> str:
    """``CANDLECAST_SERVICE_URL`` when set (a service on another host: its record, if shared,
    names a process of another machine); else the recorded URL while its process lives; else
    the configured host and port."""
    settings = settings or get_settings()
    if settings.service_url:
        return settings.service_url
    try:
        found = json.loads(endpoint_path(settings).read_text())
        os.kill(int(found["pid"]), 0)  # raises when no such process
        return str(found["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return settings.service_base_url
