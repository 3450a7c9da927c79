"""The REST client retries a 5xx: a retry that succeeds logs nothing above INFO (a healthy
run, e.g. SQLite refusing a write while the scheduler writes), and the last failure is raised.
Against a real HTTP server on 127.0.0.1 that fails the first ``failures`` requests."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from candlecast.cli import airflow_api
from candlecast.cli.airflow_api import AirflowApiError, AirflowClient


def _server(failures: int) -> ThreadingHTTPServer:
    answered = {"count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answered["count"] += 1
            failing = answered["count"] <= failures
            payload = b"Internal Server Error" if failing else json.dumps({"ok": True}).encode()
            self.send_response(500 if failing else 200)
            self.send_header("Content-Type", "text/plain" if failing else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def client_for(monkeypatch) -> Iterator:
    monkeypatch.setattr(airflow_api.time, "sleep", lambda seconds: None)
    servers: list[ThreadingHTTPServer] = []

    def make(failures: int) -> AirflowClient:
        server = _server(failures)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client = AirflowClient(f"http://127.0.0.1:{server.server_address[1]}", "admin", "pw")
        client._token = "token"  # no login: the server answers any bearer
        return client

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_5xx_that_a_retry_fixes_logs_no_warning(client_for, caplog):
    caplog.set_level(logging.DEBUG, logger=airflow_api.__name__)
    client = client_for(failures=1)
    assert client.request("POST", "/api/v2/backfills", {"dag_id": "d"}) == {"ok": True}
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "500" in caplog.records[0].getMessage()


def test_a_5xx_that_every_retry_gets_is_raised(client_for):
    client = client_for(failures=airflow_api.RETRIES + 1)
    with pytest.raises(AirflowApiError, match="500"):
        client.request("POST", "/api/v2/backfills", {"dag_id": "d"})
