"""The Airflow UI as an operator sees it: headless Chromium logs in (simple auth manager, the
generated password), shows the per-pair DAGs, the plugin's "Pair links" tab and a task
instance's extra links, and keeps screenshots as test artifacts (``$CANDLECAST_TEST_ARTIFACTS``,
else ``tests/artifacts/``). Assertions are on the DOM; the PNGs are for people.

The embedded Airflow as users start it (``candlecast airflow --port P``), with the repo's DAGs
and plugin; the links read a real MLflow tracking store holding the pair's experiment and a run.
The task instance's return value is written through Airflow's REST API (as a finished task's
XCom would be), so no pipeline has to run for the page to show a run link.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from candlecast.cli import embedded
from candlecast.config import load_pairs
from candlecast.modeling.training import Prepared
from candlecast.names import Stream
from candlecast.settings import Settings
from tests.browser import Browser, chromium
from tests.helpers import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium() is None, reason="chromium missing (scripts/setup.sh)"),
]

RUN_ID = "screenshot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def artifacts() -> Path:
    folder = Path(os.environ.get("CANDLECAST_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Ui:
    """An API server, who may log in, and what the links should point at."""

    url: str
    password: str
    streams: list[Stream]
    experiment_id: str  # of the first stream
    run_id: str  # an MLflow run of the first stream, returned by a task of its train DAG
    task_id: str
    external: dict[str, str]  # the base URLs the links are built on

    def token(self) -> str:
        login = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": "admin", "password": self.password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=120) as answer:
            return str(json.loads(answer.read())["access_token"])

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"},
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())


def mlflow_run(settings: Settings, stream: Stream) -> tuple[str, str]:
    """The stream's experiment in the tracking store under the data directory, and a run."""
    from mlflow.tracking import MlflowClient

    settings.paths.mlflow.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    artifact_location = (settings.paths.mlflow_artifacts / stream.key).as_uri()
    experiment = client.create_experiment(stream.experiment, artifact_location=artifact_location)
    return experiment, client.create_run(experiment).info.run_id


def first_task(ui: Ui, dag_id: str) -> str:
    """The train DAG's first task (no upstream): the one that opens the training run."""
    tasks = ui.api("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    downstream = {d for task in tasks for d in task["downstream_task_ids"]}
    return next(t["task_id"] for t in tasks if t["task_id"] not in downstream)


def wait_for_dags(ui: Ui, airflow: subprocess.Popen, timeout: float = 900) -> None:
    """Until the DAG processor has parsed every pair's DAGs into the metadata database."""
    expected = {d for stream in ui.streams for d in stream.dag_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert airflow.poll() is None, f"candlecast airflow exited ({airflow.returncode})"
        listed = {d["dag_id"] for d in ui.api("GET", "/api/v2/dags?limit=100")["dags"]}
        if expected <= listed:
            return
        time.sleep(2)
    raise TimeoutError(f"DAGs {sorted(expected - listed)} not parsed within {timeout:.0f} s")


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[Ui]:
    home = tmp_path_factory.mktemp("ui-home")
    ports = {name: free_port() for name in ("airflow", "mlflow", "service", "grafana")}
    external = {
        "CANDLECAST_MLFLOW_UI_URL": f"http://127.0.0.1:{ports['mlflow']}",
        "CANDLECAST_SERVICE_URL": f"http://127.0.0.1:{ports['service']}",
        "CANDLECAST_GRAFANA_URL": f"http://127.0.0.1:{ports['grafana']}/grafana",
    }
    settings = Settings(home=home, pairs=REPO / "config" / "pairs.yaml")
    streams = sorted(pair.stream for pair in load_pairs(settings.pairs).pairs)
    experiment_id, run_id = mlflow_run(settings, streams[0])

    env = dict(os.environ, CANDLECAST_HOME=str(home), CANDLECAST_PAIRS=str(settings.pairs))
    command = [str(embedded.BIN / "candlecast"), "airflow", "--port", str(ports["airflow"])]
    airflow = embedded.start(command, home / "candlecast-airflow.log", env | external)
    try:
        url = embedded.airflow_base_url("127.0.0.1", ports["airflow"])
        embedded.wait_http(f"{url}/api/v2/monitor/health", timeout=900, proc=airflow)
        password = embedded.airflow_password(settings)
        ui = Ui(url, password, streams, experiment_id, run_id, "", external)
        wait_for_dags(ui, airflow)
        dag_id = streams[0].train_dag_id
        ui.task_id = first_task(ui, dag_id)
        # a run of the (paused) DAG, and what its first task returns once it has run
        ui.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": RUN_ID, "logical_date": None}
        )
        returned = Prepared(
            run_id, "training.parquet", "2022-03-01T00:00:00+00:00", ["lightgbm"], 2880, {}, {}
        )
        ui.api(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns/{RUN_ID}/taskInstances/{ui.task_id}/xcomEntries",
            {"key": "return_value", "value": asdict(returned)},
        )
        yield ui
    finally:
        embedded.stop([airflow])  # SIGTERM: the command stops every process it started


@pytest.fixture(scope="module")
def browser(ui, tmp_path_factory) -> Iterator[Browser]:
    """Chromium, logged in through the UI's own login form."""
    with Browser.launch(tmp_path_factory.mktemp("chromium")) as browser:
        browser.goto(f"{ui.url}/")
        browser.wait_for("!!document.querySelector('input[name=password]')", "login form")
        browser.type_into("input[name=username]", "admin")
        browser.type_into("input[name=password]", ui.password)
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        browser.wait_for("!location.pathname.startsWith('/auth/')", "the UI after login")
        yield browser


def shot(browser: Browser, name: str) -> Path:
    path = browser.screenshot(artifacts() / name)
    print(f"screenshot: {path}")
    return path


def test_dag_list_shows_each_pairs_dags(ui, browser):
    expected = {f"/dags/{d}" for stream in ui.streams for d in stream.dag_ids}
    browser.goto(f"{ui.url}/dags")
    shown = browser.wait_for(
        f"""(() => {{
          const hrefs = Array.from(document.querySelectorAll('a[href^="/dags/"]'),
                                   a => a.getAttribute('href'));
          return {json.dumps(sorted(expected))}.every(h => hrefs.includes(h)) && hrefs;
        }})()""",
        "every pair's candles and train DAG in the DAG list",
    )
    assert expected <= set(shown)
    assert shot(browser, "airflow-dag-list.png").stat().st_size > 10_000


def tab_links(browser: Browser, dag_id: str, url: str) -> dict[str, str]:
    browser.goto(f"{url}/dags/{dag_id}/plugin/candlecast-links")
    return dict(
        browser.wait_for(
            f"""(() => {{
              const frame = document.querySelector('iframe[title="Pair links"]');
              const page = frame && frame.contentDocument;
              if (!page || !page.body || !page.body.innerText.includes({json.dumps(dag_id)}))
                return null;
              return Array.from(page.querySelectorAll('a[data-link]'),
                                a => [a.dataset.link, a.href]);
            }})()""",
            f"the Pair links tab of {dag_id}",
        )
    )


def test_pair_links_tab_links_each_pair_and_opens_them(ui, browser):
    stream, other = ui.streams[0], ui.streams[-1]
    found = tab_links(browser, other.candles_dag_id, ui.url)
    grafana = ui.external["CANDLECAST_GRAFANA_URL"]
    assert found["Grafana dashboard"] == f"{grafana}/d/{other.dashboard_uid}"
    assert "experimentSearchFilter" in found["MLflow experiment"]  # no experiment yet

    found = tab_links(browser, stream.train_dag_id, ui.url)
    mlflow = ui.external["CANDLECAST_MLFLOW_UI_URL"]
    assert found == {
        "MLflow experiment": f"{mlflow}/#/experiments/{ui.experiment_id}",
        "Registered model": f"{mlflow}/#/models/{stream.key}_forecaster",
        "Prediction service": f"{ui.external['CANDLECAST_SERVICE_URL']}/docs",
        "Grafana dashboard": f"{grafana}/d/{stream.dashboard_uid}",
    }
    shot(browser, "airflow-pair-links-tab.png")

    # a real click in the sandboxed frame opens the link in a new tab; Airflow stays
    x, y = browser.wait_for(
        """(() => {
          const frame = document.querySelector('iframe[title="Pair links"]');
          const link = frame.contentDocument.querySelector('a[data-link="Grafana dashboard"]');
          const a = link.getBoundingClientRect(), f = frame.getBoundingClientRect();
          return [f.left + a.left + a.width / 2, f.top + a.top + a.height / 2];
        })()""",
        "the dashboard link's position",
    )
    browser.click_at(x, y)
    browser.wait_for_page(found["Grafana dashboard"])
    assert browser.evaluate("location.pathname").endswith("/plugin/candlecast-links")


def test_task_instance_shows_the_pairs_links_and_its_run(ui, browser):
    stream = ui.streams[0]
    browser.goto(f"{ui.url}/dags/{stream.train_dag_id}/runs/{RUN_ID}/tasks/{ui.task_id}/details")
    found = dict(
        browser.wait_for(
            """(() => {
              const links = Array.from(document.querySelectorAll('a[target]'),
                                       a => [a.textContent, a.href]);
              return links.some(([name]) => name === 'MLflow run') && links;
            })()""",
            "the task instance's extra links",
        )
    )
    mlflow = ui.external["CANDLECAST_MLFLOW_UI_URL"]
    experiment = f"{mlflow}/#/experiments/{ui.experiment_id}"
    assert found["MLflow run"] == f"{experiment}/runs/{ui.run_id}"
    assert found["MLflow experiment"] == experiment
    assert found["Registered model"] == f"{mlflow}/#/models/{stream.key}_forecaster"
    assert found["Grafana dashboard"].endswith(f"/d/{stream.dashboard_uid}")
    assert found["Prediction service"].endswith("/docs")
    shot(browser, "airflow-task-links.png")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_go_redirects_to_one_link_for_logged_in_users_only(ui):
    stream = ui.streams[0]
    url = f"{ui.url}/candlecast/dags/{stream.train_dag_id}/go/dashboard"
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        opener.open(url, timeout=120)
    assert anonymous.value.code == 401
    request = urllib.request.Request(url, headers={"Cookie": f"_token={ui.token()}"})
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=120)
    assert redirect.value.code == 307
    grafana = ui.external["CANDLECAST_GRAFANA_URL"]
    assert redirect.value.headers["Location"] == f"{grafana}/d/{stream.dashboard_uid}"
