"""Announcements go where the running service listens (issue 20 #14): a service started with
``serve --port`` records its URL and pid; the pipeline's announcement reaches it there, and a
record whose process is gone falls back to the configured URL."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from candlecast.names import Stream
from candlecast.serving.endpoint import record_endpoint, service_url
from candlecast.serving.notify import announce
from tests.helpers import settings_in


class _Service(BaseHTTPRequestHandler):
    """A stand-in of the prediction service's /refresh: it keeps what it was told."""

    heard: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).heard.append({"path": self.path, **body})
        answer = json.dumps({"refreshed": body["stream"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def test_the_announcement_goes_to_the_port_the_service_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("CANDLECAST_SERVICE_URL", raising=False)
    settings = settings_in(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert url != settings.service_base_url  # not where the settings point
        record_endpoint(url, os.getpid(), settings)  # a live process: this one
        assert service_url(settings) == url
        stream = Stream("replay", "BTC/USD", "1h")
        assert announce(stream, settings) is True
        assert _Service.heard == [{"path": "/refresh", "stream": stream.key}]
    finally:
        server.shutdown()


def test_a_record_of_a_stopped_service_falls_back_to_the_configured_url(tmp_path):
    settings = settings_in(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    record_endpoint("http://127.0.0.1:1", gone.pid, settings)
    assert service_url(settings) == settings.service_base_url
