"""The optional webhook: Slack-compatible JSON, posted in the background, never in the way."""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from candlecast.monitoring.notify import notify


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []
    release = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.headers["Content-Type"], json.loads(body)))
        Hook.release.wait(timeout=600)  # a stalled webhook until the test lets it go
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    Hook.received = []
    Hook.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    Hook.release.set()
    server.shutdown()


def test_posts_slack_json_without_waiting_for_the_answer(hook):
    thread = notify("retraining BTC/USD: data drift", url=hook, timeout=600)
    # notify returned while the webhook still holds the request open
    while not Hook.received:
        thread.join(timeout=0.05)
    assert thread.is_alive()
    assert Hook.received == [("application/json", {"text": "retraining BTC/USD: data drift"})]
    Hook.release.set()
    thread.join(timeout=600)
    assert not thread.is_alive()


def test_a_down_webhook_is_logged_not_raised(caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="candlecast.monitoring.notify"):
        thread = notify("x", url=f"http://127.0.0.1:{port}/hook", timeout=5)
        thread.join(timeout=600)
    assert "not notified" in caplog.text


def test_no_webhook_configured_does_nothing(monkeypatch):
    monkeypatch.delenv("CANDLECAST_WEBHOOK_URL", raising=False)
    assert notify("x") is None
