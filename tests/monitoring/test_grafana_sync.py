"""``candlecast grafana sync`` against a local stand-in for the Grafana HTTP API endpoints it
calls (Grafana itself cannot be installed here): requests recorded and checked against the
API's documented shapes; a second sync writes nothing; a fresh data directory syncs too."""

import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from candlecast.cli.main import app
from candlecast.monitoring import grafana
from candlecast.monitoring.store import MetricsStore


class FakeGrafana(BaseHTTPRequestHandler):
    """Folders, datasources by uid, dashboards by uid and /db, annotations: as documented at
    https://grafana.com/docs/grafana/latest/developers/http_api/ (shapes checked below)."""

    state: dict
    requests: list

    def _send(self, code, body):
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _record(self, body=None):
        url = urlparse(self.path)
        self.requests.append((self.command, url.path, parse_qs(url.query), body))
        assert self.headers["Authorization"] == "Bearer glsa_test", self.headers["Authorization"]
        return url

    def do_GET(self):
        url = self._record()
        state = self.state
        if m := re.fullmatch(r"/api/folders/([\w-]+)", url.path):
            found = state["folders"].get(m[1])
        elif m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", url.path):
            found = state["datasources"].get(m[1])
        elif m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", url.path):
            found = state["dashboards"].get(m[1])
        elif url.path == "/api/annotations":
            query = parse_qs(url.query)
            tags, start = set(query.get("tags", [])), int(query["from"][0])
            found = [
                a
                for a in state["annotations"]
                if tags <= set(a["tags"]) and start <= a["time"] <= int(query["to"][0])
            ]
        else:
            found = None
        self._send(200, found) if found is not None else self._send(404, {"message": "Not found"})

    def do_POST(self):
        body = self._body()
        url = self._record(body)
        state = self.state
        if url.path == "/api/folders":
            assert set(body) <= {"title", "uid", "parentUid"} and body["title"]
            state["folders"][body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 1}
            self._send(200, state["folders"][body["uid"]])
        elif url.path == "/api/datasources":
            assert {"name", "type", "access", "url", "uid"} <= set(body)
            stored = {k: v for k, v in body.items() if k != "secureJsonData"} | {"id": 7}
            state["datasources"][body["uid"]] = stored
            self._send(200, {"datasource": stored, "id": 7, "message": "Datasource added"})
        elif url.path == "/api/dashboards/db":
            dash = body["dashboard"]
            assert {"uid", "title", "panels", "schemaVersion"} <= set(dash)
            assert dash["id"] is None and body["overwrite"] is True and body["folderUid"]
            have = state["dashboards"].get(dash["uid"])
            version = have["dashboard"]["version"] + 1 if have else 1
            stored = dash | {"id": 11, "version": version}
            state["dashboards"][dash["uid"]] = {
                "dashboard": stored,
                "meta": {"folderUid": body["folderUid"]},
            }
            self._send(200, {"status": "success", "uid": dash["uid"], "version": version})
        elif url.path == "/api/annotations":
            assert isinstance(body["time"], int) and isinstance(body["text"], str)
            assert body["tags"] and all(isinstance(t, str) for t in body["tags"])
            state["annotations"].append(body | {"id": len(state["annotations"]) + 1})
            self._send(200, {"message": "Annotation added", "id": len(state["annotations"])})
        else:
            self._send(404, {"message": "Not found"})

    def do_PUT(self):
        body = self._body()
        url = self._record(body)
        m = re.fullmatch(r"/api/datasources/uid/([\w-]+)", url.path)
        assert m and m[1] in self.state["datasources"] and "secureJsonData" not in body
        self.state["datasources"][m[1]] = body | {"id": 7}
        self._send(200, {"message": "Datasource updated"})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_grafana():
    handler = type(
        "Handler",
        (FakeGrafana,),
        {
            "state": {"folders": {}, "datasources": {}, "dashboards": {}, "annotations": []},
            "requests": [],
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def writes(handler) -> list:
    return [r for r in handler.requests if r[0] in ("POST", "PUT", "DELETE")]


def test_sync_on_a_fresh_data_directory_then_again_changes_nothing(
    fake_grafana, tmp_path, monkeypatch
):
    url, handler = fake_grafana
    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path / "fresh"))
    monkeypatch.setenv("MONITORING_DB_USER", "grafana_reader")
    first = CliRunner().invoke(app, ["grafana", "sync", "--url", url, "--token", "glsa_test"])
    assert first.exit_code == 0, first.output
    state = handler.state
    assert set(state["folders"]) == {"candlecast"}
    assert set(state["datasources"]) == {"prometheus", "candlecast-postgres"}
    assert state["datasources"]["candlecast-postgres"]["user"] == "grafana_reader"
    created = [r for r in handler.requests if r[:2] == ("POST", "/api/datasources")]
    assert "secureJsonData" in next(r[3] for r in created if r[3]["uid"] == "candlecast-postgres")
    files = {d["uid"] for d in grafana.dashboards()}
    assert set(state["dashboards"]) == files
    assert {"candlecast-service-health", "cc-replay_btc_usd_1h"} <= files
    assert state["annotations"] == []  # nothing monitored yet

    count = len(writes(handler))
    second = CliRunner().invoke(app, ["grafana", "sync", "--url", url, "--token", "glsa_test"])
    assert second.exit_code == 0, second.output
    assert len(writes(handler)) == count  # idempotent: only reads the second time
    assert "0 writes" in second.output


def test_annotations_of_retrains_and_champion_changes_are_added_once(fake_grafana, tmp_path):
    url, handler = fake_grafana
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    at = datetime(2022, 3, 1, 12, tzinfo=UTC)
    store.record_retrain_request("replay_btc_usd_1h", at, "data drift: 9 of 15 ...")
    from tests.monitoring.test_metrics_store import row

    for checked_at, version in ((1000, "3"), (2000, "3"), (3000, "4")):
        store.write_check(row("replay_btc_usd_1h", checked_at, 0.1, champion_version=version), [])
    first = grafana.sync(url, "glsa_test", store)
    notes = handler.state["annotations"]
    assert [(a["time"], a["tags"][2], a["text"]) for a in notes] == [
        (int(at.timestamp() * 1000), "retrain", "retrain requested: data drift: 9 of 15 ..."),
        (1000, "champion", "champion version 3"),
        (3000, "champion", "champion version 4"),
    ]
    assert all(a["tags"][:2] == ["candlecast", "replay_btc_usd_1h"] for a in notes)
    assert first.writes > 3
    again = grafana.sync(url, "glsa_test", store)
    assert again.writes == 0 and len(handler.state["annotations"]) == 3


def test_a_changed_datasource_or_dashboard_is_updated(fake_grafana, tmp_path):
    url, handler = fake_grafana
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    grafana.sync(url, "glsa_test", store)
    handler.state["datasources"]["prometheus"]["url"] = "http://elsewhere:9090"
    handler.state["dashboards"]["cc-replay_btc_usd_1h"]["dashboard"]["title"] = "edited by hand"
    report = grafana.sync(url, "glsa_test", store)
    assert sorted(report.updated) == ["dashboard cc-replay_btc_usd_1h", "datasource prometheus"]
    assert handler.state["datasources"]["prometheus"]["url"] == "http://prometheus:9090"
    assert handler.state["dashboards"]["cc-replay_btc_usd_1h"]["dashboard"]["version"] == 2
