"""Optional notification of a retrain request to a Slack-compatible incoming webhook.

The POST (``{"text": ...}``) runs on a daemon thread with a short timeout: a webhook that is
down, slow or refusing never delays or fails the check; what went wrong is logged.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

from candlecast.monitoring.settings import get_monitoring_settings

log = logging.getLogger(__name__)


def notify(
    text: str, url: str | None = None, timeout: float | None = None
) -> threading.Thread | None:
    """Post ``text`` to the webhook (``url`` or ``CANDLECAST_WEBHOOK_URL``) in the background.

    Returns the posting thread (None when no webhook is configured)."""
    settings = get_monitoring_settings()
    url = url or settings.webhook_url
    if not url:
        return None
    thread = threading.Thread(
        target=_post,
        args=(url, text, timeout or settings.webhook_timeout_s),
        name="monitoring-webhook",
        daemon=True,
    )
    thread.start()
    return thread


def _post(url: str, text: str, timeout: float) -> None:
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except Exception as exc:  # any failure: log it, never raise into the check
        log.warning("webhook %s not notified: %s: %s", url, type(exc).__name__, exc)
