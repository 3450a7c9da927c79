"""The embedded (laptop) mode: Airflow, MLflow UI and the BentoML service as local processes,
all keeping their state under the data directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from candlecast.config import PairConfig
from candlecast.settings import REPO_ROOT, Settings, get_settings

BIN = Path(sys.executable).parent


def airflow_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment for Airflow commands in embedded mode (SQLite, DAGs from this repo)."""
    settings = settings or get_settings()
    home = settings.paths.airflow
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(home))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    env.setdefault("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(home / "logs"))
    env["CANDLECAST_HOME"] = str(settings.paths.home)
    env["CANDLECAST_PAIRS"] = str(settings.pairs)
    return env


def airflow(*args: str, settings: Settings | None = None) -> Path:
    """Run an ``airflow`` CLI command in embedded mode, its output going to a log file under
    the data directory; returns the log. Raises with the log's tail if the command fails."""
    settings = settings or get_settings()
    settings.paths.airflow.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(args))[:120]
    log = settings.paths.logs / f"airflow-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        done = subprocess.run(
            [str(BIN / "airflow"), *args],
            env=airflow_env(settings),
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}); {log}:\n{tail}")
    return log


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a background process with its output in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    return subprocess.Popen(
        args,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env or dict(os.environ),
        start_new_session=True,
    )


def wait_http(url: str, timeout: float = 600.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 2xx (or raise naming the URL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 300:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def bentoml_command(host: str, port: int) -> list[str]:
    return [
        str(BIN / "bentoml"),
        "serve",
        "service:Candlecast",
        "--working-dir",
        str(REPO_ROOT / "serving"),
        "--host",
        host,
        "--port",
        str(port),
    ]


def bentoml_env(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or get_settings()
    env = dict(os.environ)
    env["CANDLECAST_HOME"] = str(settings.paths.home)
    env["CANDLECAST_PAIRS"] = str(settings.pairs)
    env["BENTOML_HOME"] = str(settings.paths.bentoml)
    env["BENTOML_DO_NOT_TRACK"] = "True"
    return env


def latest_decision(pair: PairConfig) -> str:
    """The promotion reason of the pair's latest training run, in one line."""
    import mlflow

    from candlecast.modeling import registry

    registry.configure()
    runs = mlflow.search_runs(
        experiment_names=[pair.stream.experiment],
        filter_string="tags.`promotion.reason` LIKE '%'",
        order_by=["start_time DESC"],
        max_results=1,
    )
    return str(runs["tags.promotion.reason"].iloc[0]) if len(runs) else "no promotion yet"


def start_services(settings: Settings) -> list[subprocess.Popen]:
    """The prediction service, MLflow UI and Airflow UI in the background (logs under home);
    waits until the service is ready."""
    logs = settings.paths.logs
    host, port = settings.service_host, settings.service_port
    service = start(bentoml_command(host, port), logs / "bentoml.log", bentoml_env(settings))
    mlflow_ui = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            settings.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            "5000",
        ],
        logs / "mlflow.log",
    )
    airflow_ui = start(
        [str(BIN / "airflow"), "api-server", "--port", "8080"],
        logs / "airflow-api-server.log",
        airflow_env(settings),
    )
    wait_http(f"http://{host}:{port}/readyz", proc=service)
    return [service, mlflow_ui, airflow_ui]


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
