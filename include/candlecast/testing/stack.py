"""The production configuration on one machine, for the integration tests.

What ``docker-compose.yml`` runs in containers, as local processes on the local PostgreSQL and
Redis: Airflow with the CeleryExecutor (API server, scheduler, DAG processor and several
``airflow celery worker`` processes; metadata and Celery results in PostgreSQL, the broker in
a Redis database), the MLflow server with its store in PostgreSQL and served artifacts, and
the Feast online store in another Redis database. Each stack gets fresh databases (dropped on
the way out), flushed Redis databases, its own secrets and login, and every process its own
process group and log file under the stack's directory.

Workers on one machine share its hostname, where containers would each have their own: each
worker process reports its name through Airflow's ``[core] hostname_callable``
(:func:`worker_hostname`), so a task instance's ``hostname`` says which worker ran it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candlecast.cli import embedded
from candlecast.cli.airflow_api import AirflowApiError, AirflowClient
from candlecast.settings import REPO_ROOT, Settings
from candlecast.testing.services import Services, free_port

#: Names a worker process to :func:`worker_hostname`.
WORKER_NAME_VAR = "CANDLECAST_WORKER_NAME"
#: A loaded 2-core machine takes minutes to start Airflow: deadlines, not races.
READY_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 60.0
SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the stack's workers: the worker's name."""
    return os.environ.get(WORKER_NAME_VAR) or socket.getfqdn()


@dataclass
class CeleryStack:
    """One production-like deployment under ``root``: prepare, start, wait, stop, clean up.

    Args:
        root: the stack's directory (data directory ``home/``, logs in ``home/logs``).
        pairs: the pair config the DAGs are built from.
        broker_db, online_db: Redis databases of the Celery broker and the online store
            (flushed at start and end).
        workers: how many ``airflow celery worker`` processes (concurrency 1 each).
    """

    root: Path
    pairs: Path
    broker_db: int
    online_db: int
    workers: int = 2
    services: Services = field(default_factory=Services)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    api_port: int = field(default_factory=free_port)
    mlflow_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _secrets: dict[str, str] = field(default_factory=dict)

    # -- names -----------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def airflow_database(self) -> str:
        return f"cc_airflow_{self.suffix}"

    @property
    def mlflow_database(self) -> str:
        return f"cc_mlflow_{self.suffix}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def worker_names(self) -> list[str]:
        return [f"cc-worker-{index}" for index in range(1, self.workers + 1)]

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    # -- environments ----------------------------------------------------------------------------

    def settings(self) -> Settings:
        """The platform's settings as the stack's processes read them."""
        return Settings(
            home=self.home,
            pairs=self.pairs,
            mlflow_tracking_uri=self.mlflow_url,
            online_store="redis",
            redis_url=self.services.feast_redis(self.online_db),
        )

    def candlecast_env(self) -> dict[str, str]:
        """This process's environment without any Airflow, BentoML or candlecast setting, then
        the stack's: data directory, pair config, MLflow server, Redis online store."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "_AIRFLOW", "BENTOML", "CANDLECAST", "MLFLOW"))
        }
        env.update(
            {
                "CANDLECAST_HOME": str(self.home),
                "CANDLECAST_PAIRS": str(self.pairs),
                "CANDLECAST_MLFLOW_TRACKING_URI": self.mlflow_url,
                "CANDLECAST_ONLINE_STORE": "redis",
                "CANDLECAST_REDIS_URL": self.services.feast_redis(self.online_db),
                # deploys announce their champion to nobody (a port nothing listens on)
                "CANDLECAST_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
                "BENTOML_HOME": str(self.home / "bentoml"),
                "BENTOML_DO_NOT_TRACK": "True",
                "GX_ANALYTICS_ENABLED": "False",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                # MLflow runs its basic-auth app: the pipeline logs in as its admin
                "MLFLOW_TRACKING_USERNAME": "admin",
                "MLFLOW_TRACKING_PASSWORD": self.password,
            }
        )
        return env

    def airflow_env(self) -> dict[str, str]:
        """Airflow as ``docker-compose.yml`` configures it, on this machine's services."""
        airflow_home = self.home / "airflow"
        metadata = self.services.postgres_url(self.airflow_database)
        env = self.candlecast_env()
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.replace(
                    "postgresql://", "postgresql+psycopg2://", 1
                ),
                # Airflow derives postgresql+asyncpg:// otherwise, and asyncpg is not installed:
                # psycopg 3 (installed) drives the async engine
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata.replace(
                    "postgresql://", "postgresql+psycopg://", 1
                ),
                "AIRFLOW__CELERY__BROKER_URL": self.services.redis_url(self.broker_db),
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
                # publishing a task to the broker waits 1 s by default: too short when loaded
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
                "AIRFLOW__CORE__FERNET_KEY": self._secrets["fernet"],
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt"],
                "AIRFLOW__API_AUTH__JWT_ISSUER": "candlecast",
                "AIRFLOW__API__SECRET_KEY": self._secrets["api"],
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    airflow_home / "passwords.json"
                ),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
                # a loaded 2-core machine parses and imports slowly, and tasks may wait
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800",
            }
        )
        return env

    def worker_env(self, name: str) -> dict[str, str]:
        env = self.airflow_env()
        env[WORKER_NAME_VAR] = name
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{__name__}.worker_hostname"
        return env

    # -- lifecycle -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Fresh databases, flushed Redis databases, secrets and the login; start MLflow (it
        migrates its own store) while ``airflow db migrate`` runs."""
        self.services.check()
        self.logs.mkdir(parents=True, exist_ok=True)
        for database in (self.airflow_database, self.mlflow_database):
            self.services.query(self.services.admin_database, f'CREATE DATABASE "{database}"')
        for db in (self.broker_db, self.online_db):
            self.services.flush_redis(db)
        self._secrets = {
            "fernet": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "jwt": secrets.token_urlsafe(48),
            "api": secrets.token_urlsafe(48),
        }
        passwords = self.home / "airflow" / "passwords.json"
        passwords.parent.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({"admin": self.password}) + "\n")
        passwords.chmod(0o600)
        self._start("mlflow", self._mlflow_command(), self._mlflow_env())
        settings = Settings(home=self.home, pairs=self.pairs)
        embedded.airflow("db", "migrate", settings=settings, env=self.airflow_env())

    def _mlflow_env(self) -> dict[str, str]:
        """The production server's settings (``docker-compose.yml``): store URI from the
        environment, the basic-auth app with ``deploy/mlflow/basic_auth.ini``, its user store
        moved under the stack's directory."""
        ini = (REPO_ROOT / "deploy" / "mlflow" / "basic_auth.ini").read_text()
        users = f"database_uri = sqlite:///{self.root / 'mlflow-auth.db'}"
        auth = self.root / "basic_auth.ini"
        auth.write_text(re.sub(r"(?m)^database_uri\s*=.*$", lambda _: users, ini))
        env = self.candlecast_env()
        env.update(
            {
                "MLFLOW_BACKEND_STORE_URI": self.services.postgres_url(self.mlflow_database),
                "MLFLOW_AUTH_CONFIG_PATH": str(auth),
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
            }
        )
        return env

    def _mlflow_command(self) -> list[str]:
        return [
            str(embedded.BIN / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--artifacts-destination",
            (self.home / "mlflow-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.mlflow_port),
            "--workers",
            "1",
        ]

    def _start(self, component: str, command: list[str], env: dict[str, str]) -> None:
        self.procs[component] = embedded.start(command, self.log(component), env)

    def start(self) -> None:
        """API server, scheduler, DAG processor and the Celery workers."""
        airflow, env = str(embedded.BIN / "airflow"), self.airflow_env()
        self._start("api-server", [airflow, "api-server"], env)
        # task logs are files on this machine that the API server reads: no log servers,
        # which would all listen on the same port
        self._start("scheduler", [airflow, "scheduler", "--skip-serve-logs"], env)
        self._start("dag-processor", [airflow, "dag-processor"], env)
        for name in self.worker_names:
            self._start_worker(name)

    def _start_worker(self, name: str) -> None:
        command = [
            *(str(embedded.BIN / "airflow"), "celery", "worker", "--concurrency", "1"),
            *("--skip-serve-logs", "--celery-hostname", f"{name}@%h"),
            *("--pid", str(self.home / "airflow" / f"{name}.pid")),
        ]
        self._start(name, command, self.worker_env(name))

    def add_worker(self) -> str:
        """Start one more Celery worker (scale out a running stack); returns its name."""
        self.workers += 1
        name = self.worker_names[-1]
        self._start_worker(name)
        return name

    def wait_workers(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until every worker answers a Celery ping on the broker (it takes tasks)."""
        from celery import Celery

        app = Celery(broker=self.services.redis_url(self.broker_db))
        deadline, answered = time.monotonic() + timeout, set[str]()
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                replies = app.control.ping(timeout=5)
                answered = {node.split("@")[0] for reply in replies for node in reply}
                if answered >= set(self.worker_names):
                    return
        finally:
            app.close()
        raise TimeoutError(
            f"workers not answering within {timeout:.0f} s: "
            f"{sorted(set(self.worker_names) - answered)}"
        )

    def check_alive(self) -> None:
        """Raise naming the first process that exited, with its log's tail."""
        for component, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{component} exited with code {proc.returncode}; "
                    f"{self.log(component)}:\n{tail(self.log(component), 40)}"
                )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until MLflow answers and Airflow's scheduler and DAG processor beat."""
        deadline, waiting = time.monotonic() + timeout, ["mlflow", "api-server"]
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.mlflow_url}/health", timeout=30):
                    waiting = ["api-server"]  # MLflow answers "OK"
                health = embedded.get_json(f"{self.api_url}/api/v2/monitor/health", timeout=30)
            except OSError:
                time.sleep(2)
                continue
            waiting = [
                part
                for part in ("metadatabase", "scheduler", "dag_processor")
                if (health.get(part) or {}).get("status") != "healthy"
            ]
            if not waiting:
                return
            time.sleep(2)
        raise TimeoutError(f"stack not ready within {timeout:.0f} s: waiting for {waiting}")

    def client(self) -> AirflowClient:
        return AirflowClient(self.api_url, "admin", self.password)

    def create_pools(self, pools: dict[str, dict[str, Any]]) -> None:
        """Pools in ``airflow pools import`` form, created through the REST API."""
        client = self.client()
        for name, spec in pools.items():
            try:
                client.request("POST", "/api/v2/pools", {"name": name, **spec})
            except AirflowApiError as exc:
                if exc.status != 409:  # already there
                    raise

    def stop(self) -> None:
        """Every process with its children: SIGTERM, then SIGKILL."""
        embedded.stop(list(self.procs.values()), timeout=STOP_TIMEOUT_S)

    def clean_up(self) -> None:
        """Drop the databases and flush the Redis databases (after :meth:`stop`)."""
        for database in (self.airflow_database, self.mlflow_database):
            self.services.query(
                self.services.admin_database, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
            )
        for db in (self.broker_db, self.online_db):
            self.services.flush_redis(db)

    def leftovers(self) -> list[Any]:
        """Processes still running with the stack's data directory (psutil processes)."""
        import psutil

        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("CANDLECAST_HOME") == str(self.home):
                    found.append(proc)
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return found

    def report(self, lines: int = 30) -> str:
        """Where every log is, and its last lines."""
        parts = [f"stack logs in {self.logs} (task logs in {self.home / 'airflow' / 'logs'})"]
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"==> {path} <==\n{tail(path, lines)}")
        return "\n".join(parts)


def tail(path: Path, lines: int) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running(stack: CeleryStack, timeout: float = READY_TIMEOUT_S) -> Iterator[CeleryStack]:
    """Prepare, start and wait for the stack; on any failure print where the logs are and
    their tails; always stop every process and drop the databases."""
    try:
        stack.prepare()
        stack.start()
        stack.wait_ready(timeout)
        yield stack
    except BaseException:
        print(stack.report(), file=sys.stderr)
        raise
    finally:
        try:
            stack.stop()
        finally:
            stack.clean_up()
