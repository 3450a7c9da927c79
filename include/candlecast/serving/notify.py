"""Tell the prediction service that a stream has news (new features, a new champion).

The service keeps models and the latest features in memory and answers from there; the
materialize and deploy stages call :func:`announce` after they write, and the service reloads
the stream before it answers the announcement, so every answer after ``announce`` returned
True uses what the stores held at that moment. A service that is down or refuses is logged
and reported as False, never raised: the pipeline must not fail because nobody is serving
(the service's periodic check picks the news up later).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from candlecast.names import Stream
from candlecast.serving.auth import load_keys
from candlecast.serving.endpoint import service_url
from candlecast.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Path of the service's refresh endpoint.
REFRESH_PATH = "/refresh"


def announce(stream: Stream, settings: Settings | None = None, timeout: float = 60.0) -> bool:
    """POST ``{"stream": <key>}`` to the service's ``/refresh`` (where the running service
    recorded it listens, :mod:`.endpoint`); True when it reloaded.

    Sends the first configured API key (``CANDLECAST_API_KEYS``/``_FILE``) when there is one.
    Never raises: any failure (service down, 4xx/5xx, timeout) is logged and returns False.
    """
    try:
        settings = settings or get_settings()
        url = service_url(settings).rstrip("/") + REFRESH_PATH
        headers = {"Content-Type": "application/json"}
        keys = load_keys()
        if keys:
            headers["Authorization"] = f"Bearer {keys[0].decode()}"
        body = json.dumps({"stream": stream.key}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        log.warning("service refused the news of %s: HTTP %s", stream.label, exc.code)
        return False
    except urllib.error.URLError as exc:
        if not isinstance(exc.reason, ConnectionRefusedError):
            log.warning("could not announce %s to the service: %s", stream.label, exc)
            return False
        # nothing listens: no service is running (a pipeline without serving, a demo before
        # its service starts), which is no fault of the run; a service started later loads
        # the stores at start-up
        log.info("no prediction service at %s to announce %s to", url, stream.label)
        return False
    except Exception as exc:  # never fail the caller over the service
        log.warning("could not announce %s to the service: %s", stream.label, exc)
        return False
    unshared = _unshared(answer)
    if unshared:  # the worker that answered reloaded; the others catch up periodically
        log.warning("announced %s to one worker of the service only: %s", stream.label, unshared)
    else:
        log.info("announced %s to the service: %s", stream.label, answer)
    return True


def _unshared(answer: object) -> str | None:
    """Why the service could not pass the news on to its other workers, if it said so."""
    states = answer.get("refreshed") if isinstance(answer, dict) else None
    for state in states if isinstance(states, list) else []:
        if isinstance(state, dict) and state.get("announcement"):
            return str(state["announcement"])
    return None
