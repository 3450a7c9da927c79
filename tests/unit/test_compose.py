"""The production deployment (docker-compose.yml, Dockerfile, deploy/): parsed and checked
against each other and against the installed Airflow, BentoML and Feast, without Docker.

The installed tools are asked only through public behaviour (their CLIs, public config objects,
a briefly started server), never through their private modules, so an upgrade that keeps the
behaviour keeps these tests green. Only the last test runs ``docker compose config``, and only
where the compose plugin exists."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from shlex import quote as shlex_quote
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from candlecast.monitoring.settings import MonitoringSettings
from candlecast.serving.auth import KeySettings, load_keys
from candlecast.settings import Settings
from tests import compose_spec

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

REQUIRED_SERVICES = {
    "postgres",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "mlflow",
    "predictor",
    "prometheus",
    "grafana",
}
CANDLECAST_ENV = {
    "CANDLECAST_HOME": "/var/lib/candlecast",
    "CANDLECAST_MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "CANDLECAST_ONLINE_STORE": "redis",
    "CANDLECAST_REDIS_URL": "redis:6379,db=1",
    "CANDLECAST_PAIRS": "/opt/candlecast/config/pairs.yaml",
}
#: Host port per service: the UIs people use, and nothing else (the README lists them).
PUBLISHED = {
    "airflow-apiserver": 8080,
    "mlflow": 5000,
    "predictor": 3000,
    "grafana": 3001,
}
ENV_EXAMPLE = REPO / ".env.example"
#: Variables of .env.example that are not secrets (and may have defaults in the compose file).
NOT_SECRET = {"CANDLECAST_BIND", "CANDLECAST_IMAGE"}
#: Every secret the compose file requires, each with a distinct dummy value (for
#: `docker compose config`, and to find where a value ends up after interpolation).
REQUIRED_ENV = {
    name: f"dummy-{name.lower().replace('_', '-')}-0123456789"
    for name in compose_spec.read_env_file(ENV_EXAMPLE)
    if name not in NOT_SECRET
}
DASHBOARD_FILE = REPO / "deploy" / "grafana" / "dashboards" / "service-health.json"
SECRET_KEY = re.compile(r"PASSWORD(?!S_FILE)|SECRET|TOKEN|FERNET|_KEYS?$")
CREDENTIAL_URL = re.compile(r"://[^:/@\s]+:([^@\s]*)@")
#: A minimal ``@bentoml.service``, served for real to see what BentoML exposes on /metrics.
PROBE_SERVICE = """
import bentoml


@bentoml.service
class Probe:
    @bentoml.api
    def ping(self) -> str:
        return "pong"
"""


# -- helpers -----------------------------------------------------------------------------------


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def command(service: dict[str, Any]) -> list[str]:
    raw = service.get("command") or []
    return raw.split() if isinstance(raw, str) else [str(part) for part in raw]


def option(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a path relative to the repository)."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def mounted_script(service: dict[str, Any]) -> Path:
    """The repository file a service runs as ``sh <script>`` (bind-mounted into it)."""
    args = command(service)
    assert args[0] == "sh" and len(args) == 2, args
    return REPO / mounts(service)[args[1]]


def strings(node: Any) -> list[str]:
    """Every string anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            args = json.loads(rest) if rest.lstrip().startswith("[") else rest.split()
            instructions.append((word.upper(), args))
    return instructions


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) per COPY from the build context."""
    copies = []
    for word, args in dockerfile_instructions():
        if word in {"COPY", "ADD"}:
            assert not any(a.startswith("--from") for a in args), "multi-stage COPY: adapt test"
            paths = [a for a in args if not a.startswith("--")]
            copies.append((paths[:-1], paths[-1]))
    return copies


def workdir() -> PurePosixPath:
    dirs = [args[0] for word, args in dockerfile_instructions() if word == "WORKDIR"]
    assert len(dirs) == 1, "expected exactly one WORKDIR"
    return PurePosixPath(dirs[0])


def feast_redis(connection_string: str) -> tuple[str, dict[str, str]]:
    """Address and options of a Feast Redis ``connection_string``, in the format Feast documents
    for its Redis online store: ``host:port,key=value,...``."""
    address, *options = connection_string.split(",")
    return address, dict(option.split("=", 1) for option in options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} not ready after {timeout} s"
        time.sleep(0.1)


def http(url: str, body: bytes | None = None) -> str:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def answers(url: str) -> bool:
    try:
        http(url)
    except OSError:  # refused, reset, timed out, or an HTTP error status while starting
        return False
    return True


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def promql_labels(expr: str) -> set[str]:
    """Label names an expression matches on or aggregates by."""
    labels = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in grouping.split(",") if label.strip()}
    return labels


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def resolved(compose) -> dict[str, Any]:
    """The compose file as Compose runs it: interpolated with a complete set of secrets."""
    return compose_spec.interpolate_tree(compose, REQUIRED_ENV)


@pytest.fixture(scope="module")
def resolved_services(resolved) -> dict[str, dict[str, Any]]:
    return resolved["services"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow(services) -> dict[str, dict[str, Any]]:
    found = {name: svc for name, svc in services.items() if name.startswith("airflow-")}
    assert found
    return found


@pytest.fixture(scope="module")
def candlecast_services(services, airflow) -> dict[str, dict[str, Any]]:
    """Every service that runs candlecast code."""
    return airflow | {"predictor": services["predictor"]}


@pytest.fixture(scope="module")
def bentoml_metrics(tmp_path_factory) -> dict[str, set[str]]:
    """Series names -> label names on the /metrics of a real ``bentoml serve`` of a minimal
    ``@bentoml.service``, after one request, as Prometheus scrapes the predictor."""
    folder = tmp_path_factory.mktemp("bentoml-probe")
    (folder / "probe.py").write_text(PROBE_SERVICE)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "bentoml"), "serve", "probe:Probe", f"--port={port}", "--host=127.0.0.1"],
            cwd=folder,
            env=os.environ | {"BENTOML_DO_NOT_TRACK": "True"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: answers(f"{base}/readyz"), server, f"bentoml serve (see {log_path})")
            assert http(f"{base}/ping", b"{}") == "pong"
            exposition = http(f"{base}/metrics")
        finally:
            server.terminate()
            server.wait(timeout=30)

    metrics: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            metrics.setdefault(sample.name, set()).update(sample.labels)
    return metrics


# -- services and shared configuration ---------------------------------------------------------


def test_every_required_service_is_defined(services):
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)


def test_airflow_runs_celery_executor_on_redis_db0(airflow):
    for name, service in airflow.items():
        variables = env(service)
        assert variables["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(variables["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.netloc, broker.path) == ("redis", "redis:6379", "/0"), name
        assert variables["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")


def test_airflow_components_share_one_configuration(airflow):
    """Scheduler, DAG processor, workers and API server must agree on DAGs, database, broker
    and the JWT secret, or tasks fail to start or to authenticate."""
    prefixes = ("AIRFLOW__", "CANDLECAST_", "MLFLOW_")
    configs = {
        name: {k: v for k, v in env(svc).items() if k.startswith(prefixes)}
        for name, svc in airflow.items()
    }
    reference = configs["airflow-scheduler"]
    for name, config in configs.items():
        assert config == reference, f"{name} differs from airflow-scheduler"
    assert reference["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/candlecast/dags"
    assert reference["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )


def test_airflow_variables_name_real_options(airflow, tmp_path):
    """A misspelt AIRFLOW__SECTION__KEY is silently ignored by Airflow; check every one against
    the options the installed Airflow (core and providers, Celery included) lists."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    done = subprocess.run(
        [str(BIN / "airflow"), "config", "list", "--defaults"],
        env=clean | {"AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    known = set(re.findall(r"^# Variable: (AIRFLOW__\S+)$", done.stdout, re.M))
    assert {"AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__BROKER_URL"} <= known, "unexpected output"

    for name, service in airflow.items():
        for variable in env(service):
            if variable.startswith("AIRFLOW__"):
                assert variable in known, f"{name}: {variable} is not an Airflow option"


def test_candlecast_services_share_candlecast_settings(candlecast_services, monkeypatch):
    fields = {
        f"CANDLECAST_{field.upper()}"
        for model in (Settings, KeySettings, MonitoringSettings)
        for field in model.model_fields
    }
    for name, service in candlecast_services.items():
        variables = {k: v for k, v in env(service).items() if k.startswith("CANDLECAST_")}
        assert {k: variables.get(k) for k in CANDLECAST_ENV} == CANDLECAST_ENV, name
        # Each variable is a real setting (a typo would be ignored: extra="ignore").
        assert set(variables) <= fields, f"{name}: {set(variables) - fields}"

    for variable, value in CANDLECAST_ENV.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.online_store == "redis"
    assert settings.tracking_uri == "http://mlflow:5000"


def test_feast_online_store_and_celery_use_separate_redis_databases(services):
    address, options = feast_redis(env(services["predictor"])["CANDLECAST_REDIS_URL"])
    assert address == "redis:6379"
    assert options == {"db": "1"}
    broker = env(services["airflow-worker"])["AIRFLOW__CELERY__BROKER_URL"]
    assert urlsplit(broker).path != f"/{options['db']}"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_feast_writes_to_the_redis_database_compose_gives_it(services, tmp_path):
    """The installed Feast accepts the compose file's connection string, and a feature written
    through it lands in that Redis database, never in the Celery broker's (a real, throwaway
    redis-server; only the address is swapped for the local one)."""
    from datetime import UTC, datetime

    import pandas as pd
    import redis
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64

    def repo_config(connection_string: str) -> RepoConfig:
        return RepoConfig(
            project="compose",
            provider="local",
            registry=str(tmp_path / "registry.db"),
            online_store={"type": "redis", "connection_string": connection_string},
            entity_key_serialization_version=3,
        )

    connection_string = env(services["predictor"])["CANDLECAST_REDIS_URL"]
    online_store = repo_config(connection_string).online_store
    assert (online_store.type, online_store.connection_string) == ("redis", connection_string)
    address, options = feast_redis(connection_string)
    broker_db = int(
        urlsplit(env(services["airflow-worker"])["AIRFLOW__CELERY__BROKER_URL"]).path[1:]
    )

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: listening(port), server, "redis-server", timeout=120)
        local = connection_string.replace(address, f"127.0.0.1:{port}", 1)
        store = FeatureStore(config=repo_config(local))
        rows = pd.DataFrame({"pair": ["BTC_USD"], "close": [1.0], "ts": [datetime.now(UTC)]})
        rows.to_parquet(tmp_path / "rows.parquet")
        pair = Entity(name="pair", join_keys=["pair"], value_type=ValueType.STRING)
        view = FeatureView(
            name="probe",
            entities=[pair],
            schema=[Field(name="close", dtype=Float64)],
            source=FileSource(path=str(tmp_path / "rows.parquet"), timestamp_field="ts"),
        )
        store.apply([pair, view])
        store.write_to_online_store("probe", rows)

        sizes = {db: redis.Redis(port=port, db=db).dbsize() for db in range(16)}
        assert {db for db, size in sizes.items() if size} == {int(options["db"])}, sizes
        assert sizes[broker_db] == 0, f"Feast wrote into the Celery broker's db {broker_db}"
        online = store.get_online_features(
            features=["probe:close"], entity_rows=[{"pair": "BTC_USD"}]
        )
        assert online.to_dict()["close"] == [1.0]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_state_volume_is_shared_by_workers_and_predictor(compose, candlecast_services):
    for name, service in candlecast_services.items():
        home = env(service)["CANDLECAST_HOME"]
        source = mounts(service).get(home)
        assert source == "candlecast-home", f"{name} does not mount candlecast-home at {home}"
    assert "candlecast-home" in compose["volumes"]


def test_named_volumes_are_declared(compose, services):
    for name, service in services.items():
        for source in mounts(service).values():
            if not is_bind(source):
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_candlecast_services_run_the_repository_image(services, candlecast_services):
    users = candlecast_services | {"mlflow": services["mlflow"]}
    images = {
        name: (svc.get("image"), json.dumps(svc.get("build"), sort_keys=True))
        for name, svc in users.items()
    }
    assert len(set(images.values())) == 1, images
    build = users["predictor"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_depends_on_names_services_and_airflow_waits_for_migration(services, airflow):
    for name, service in services.items():
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for name, service in airflow.items():
        if name != "airflow-init":
            condition = service["depends_on"]["airflow-init"]["condition"]
            assert condition == "service_completed_successfully", name
    script = mounted_script(services["airflow-init"])
    assert re.search(r"^airflow db migrate$", script.read_text(), re.M)


# -- files the stack needs ---------------------------------------------------------------------


def test_every_mounted_file_exists(services):
    for name, service in services.items():
        for source in mounts(service).values():
            if is_bind(source):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_every_dockerfile_copy_exists_in_the_build_context():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"}
    copied = [source for sources, _ in dockerfile_copies() for source in sources]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
        assert source.rstrip("/") not in ignored, f"{source} is excluded by .dockerignore"


def test_dockerfile_base_install_and_user():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", ["python:3.11-slim-bookworm"])
    runs = " ".join(" ".join(args) for word, args in instructions if word == "RUN")
    assert "-r requirements.lock" in runs
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in runs
    assert "--no-deps -e ." in runs
    assert re.search(r"^torch==[\w.]+\+cpu$", (REPO / "requirements.lock").read_text(), re.M)
    users = [args[0] for word, args in instructions if word == "USER"]
    assert users and users[-1] not in {"root", "0"}


def test_container_paths_point_into_the_image(candlecast_services):
    """The DAGs folder, plugins folder and pair config the services name are where the
    Dockerfile puts those repository directories."""
    destinations = {}
    for sources, destination in dockerfile_copies():
        for source in sources:
            destinations[source.rstrip("/")] = workdir() / destination
    variables = env(candlecast_services["airflow-scheduler"])
    expected = {
        "AIRFLOW__CORE__DAGS_FOLDER": destinations["dags"],
        "AIRFLOW__CORE__PLUGINS_FOLDER": destinations["plugins"],
        "CANDLECAST_PAIRS": destinations["config"] / "pairs.yaml",
    }
    for variable, path in expected.items():
        assert PurePosixPath(variables[variable]) == path, variable
    assert (REPO / "config" / "pairs.yaml").is_file()


# -- MLflow, predictor, Prometheus, Grafana ----------------------------------------------------


def test_mlflow_server_uses_its_own_database_and_serves_artifacts(services, resolved_services):
    service = services["mlflow"]
    args = command(service)
    assert args[:2] == ["mlflow", "server"]
    # From the environment: the URI holds the database password.
    assert "--backend-store-uri" not in args
    backend = urlsplit(env(resolved_services["mlflow"])["MLFLOW_BACKEND_STORE_URI"])
    assert (backend.scheme, backend.hostname, backend.path) == ("postgresql", "postgres", "/mlflow")
    sql = (REPO / "deploy" / "postgres" / "init-mlflow.sql").read_text()
    assert re.search(r"CREATE DATABASE mlflow\b", sql, re.I)
    postgres_mounts = mounts(services["postgres"])
    assert postgres_mounts["/docker-entrypoint-initdb.d/10-init-mlflow.sql"] == (
        "./deploy/postgres/init-mlflow.sql"
    )
    assert "--serve-artifacts" in args
    assert mounts(service)[option(args, "--artifacts-destination")] == "mlflow-artifacts"
    assert option(args, "--port") == "5000"
    # MLflow 3 rejects Host headers it does not allow (fnmatch patterns, as MLflow matches them).
    allowed = option(args, "--allowed-hosts").split(",")
    host = urlsplit(CANDLECAST_ENV["CANDLECAST_MLFLOW_TRACKING_URI"]).netloc
    assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), host


def test_predictor_serves_on_3000_with_liveness_check(services):
    """Healthy means serving: /livez. /readyz stays false until the pipeline deployed a model,
    and services waiting on the predictor would wait for that."""
    service = services["predictor"]
    args = command(service)
    assert args[:2] == ["candlecast", "serve"]
    assert option(args, "--port") == "3000" and option(args, "--host") == "0.0.0.0"
    assert [port.rsplit(":", 2)[1:] for port in service["ports"]] == [["3000", "3000"]]
    assert "http://localhost:3000/livez" in " ".join(service["healthcheck"]["test"])


def test_prometheus_scrapes_the_predictor(services):
    config_path = "./deploy/prometheus/prometheus.yml"
    assert mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"] == config_path
    config = yaml.safe_load((REPO / config_path).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    predictor = jobs["predictor"]
    assert predictor.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in predictor["static_configs"] for t in static["targets"]]
    assert targets == ["predictor:3000"]
    assert "prometheus" in jobs
    # /metrics wants an API key: Prometheus reads its own from the compose secret's file.
    credentials = predictor["authorization"]["credentials_file"]
    (secret,) = services["prometheus"]["secrets"]
    assert credentials == f"/run/secrets/{secret}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_config_passes_promtool(tmp_path):
    """The installed Prometheus' own checker accepts the config (the secret's file is stood in
    for by a local one: promtool checks that it exists)."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    key = tmp_path / "key"
    key.write_text("k")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning_is_wired(services):
    grafana = services["grafana"]
    grafana_mounts = mounts(grafana)
    provisioning = REPO / grafana_mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"

    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    dashboards_dir = grafana_mounts[provider["options"]["path"]]
    dashboard = json.loads((REPO / dashboards_dir / "service-health.json").read_text())
    for panel in dashboard["panels"]:
        for target in [panel, *panel["targets"]]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_dashboard_panels_query_the_predictor(dashboard):
    """Every panel queries BentoML's service metrics from a job Prometheus scrapes."""
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())[
            "scrape_configs"
        ]
    }
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Request rate", "p95 latency", "Error rate"} <= titles
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            # BentoML's own metrics, or the service's candlecast_* ones (whose data the real
            # Prometheus test in tests/monitoring checks)
            assert re.search(r"\b(bentoml|candlecast)_\w+", expr), f"{panel['title']}: {expr}"
            assert set(re.findall(r'\bjob="([^"]+)"', expr)) <= jobs, panel["title"]


@pytest.mark.slow
def test_dashboard_queries_name_metrics_bentoml_exposes(dashboard, bentoml_metrics):
    """Every panel queries metrics by names and labels that the installed BentoML really exposes
    on /metrics, so a rename upstream fails here, not on an empty dashboard."""
    checked = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\bbentoml_\w+", expr))
            if not names:  # the service's own candlecast_* metrics: tests/monitoring
                continue
            checked.add(panel["title"])
            unknown = names - set(bentoml_metrics)
            assert not unknown, f"{panel['title']}: BentoML exposes no {unknown}"
            allowed = set.union(*(bentoml_metrics[name] for name in names)) | {"job", "instance"}
            labels = promql_labels(expr)
            assert labels <= allowed, f"{panel['title']}: unknown labels {labels - allowed}"
    assert {"Request rate", "Error rate"} <= checked  # BentoML's own request metrics


# -- the Compose specification: interpolation and schema ---------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("$A/b", {"A": "x"}, "x/b"),
        ("${A}", {}, ""),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:-${B:-n}}", {}, "n"),
        ("${A:-${B}}", {"B": "b"}, "b"),
        ("${A:?need A}", {"A": "x"}, "x"),
        ("${A?need A}", {"A": ""}, ""),
        ("$$A ${A}", {"A": "x"}, "$A x"),
        ("$${HOSTNAME}", {"HOSTNAME": "h"}, "${HOSTNAME}"),
        ("cost: 5$ or $", {}, "cost: 5$ or $"),
        ("a:${A}:${B:-2}", {"A": "1"}, "a:1:2"),
    ],
)
def test_interpolation_follows_the_compose_spec(text, env, expected):
    assert compose_spec.interpolate(text, env) == expected


@pytest.mark.parametrize(
    ("text", "env"),
    [("${A:?need A}", {}), ("${A:?need A}", {"A": ""}), ("${A?need A}", {}), ("x${A", {})],
)
def test_interpolation_fails_for_missing_required_variables(text, env):
    with pytest.raises(compose_spec.InterpolationError):
        compose_spec.interpolate(text, env)


def test_env_file_is_read_as_compose_reads_it(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# comment\n\nA=1\nB=x # comment\nC='$A literal'\nD=\"quoted $A\\tx\"\nE=${A}2\nF\nG=\n"
    )
    assert compose_spec.read_env_file(path) == {
        "A": "1",
        "B": "x",
        "C": "$A literal",
        "D": "quoted 1\tx",
        "E": "12",
        "G": "",
    }


def test_vendored_schema_names_its_source_and_licence():
    folder = compose_spec.SCHEMA_FILE.parent
    note = (folder / "README.md").read_text()
    assert re.search(r"compose-spec/compose-spec/blob/[0-9a-f]{40}/schema/compose-spec.json", note)
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert compose_spec.schema()["title"] == "Compose Specification"


def test_compose_file_is_valid_after_interpolating_env_example(compose):
    example = compose_spec.read_env_file(ENV_EXAMPLE)
    compose_spec.validate(compose_spec.interpolate_tree(compose, example))


def test_schema_validation_can_fail(resolved):
    """The schema really constrains the file: a misspelt key and a wrong type are rejected."""
    import jsonschema

    broken = json.loads(json.dumps(resolved))
    broken["services"]["predictor"]["helthcheck"] = broken["services"]["predictor"].pop(
        "healthcheck"
    )
    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        compose_spec.validate(broken)
    broken = json.loads(json.dumps(resolved))
    broken["services"]["redis"]["depends_on"] = {"postgres": {"condition": "sometime"}}
    with pytest.raises(jsonschema.ValidationError):
        compose_spec.validate(broken)


# -- secrets -----------------------------------------------------------------------------------


def test_every_variable_the_file_uses_is_in_env_example(compose):
    texts = [text.replace("$$", "") for text in strings(compose)]
    used = {name for text in texts for name in re.findall(r"\$\{([_A-Za-z]\w*)", text)}
    used |= {s["environment"] for s in compose.get("secrets", {}).values() if "environment" in s}
    assert used == set(compose_spec.read_env_file(ENV_EXAMPLE)), used


def test_without_an_env_file_compose_refuses_every_secret(compose):
    """Each secret alone missing (unset, or set but empty) stops interpolation, naming it."""
    assert set(compose_spec.missing_variables(compose)) == set(REQUIRED_ENV)
    for name in REQUIRED_ENV:
        for env in (
            {k: v for k, v in REQUIRED_ENV.items() if k != name},
            REQUIRED_ENV | {name: ""},
        ):
            with pytest.raises(compose_spec.InterpolationError, match=name):
                compose_spec.interpolate_tree(compose, env)
    with pytest.raises(compose_spec.InterpolationError):
        compose_spec.interpolate_tree(compose, {})


def test_no_secret_has_a_default(compose):
    defaults = compose_spec.defaults(compose)
    assert set(defaults) <= NOT_SECRET, set(defaults) - NOT_SECRET
    assert defaults["CANDLECAST_BIND"] == ["127.0.0.1"] * len(PUBLISHED)


def test_postgres_password_and_fernet_key_are_required(services, airflow):
    assert env(services["postgres"])["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name, service in airflow.items():
        assert env(service)["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?"), name


def test_secrets_reach_processes_only_through_their_environment(resolved_services):
    """A secret's value appears in no command, health check, port, image or label (those are
    visible in `ps` and `docker inspect`), only in `environment`."""
    for name, service in resolved_services.items():
        visible = json.dumps({k: v for k, v in service.items() if k != "environment"})
        for variable, value in REQUIRED_ENV.items():
            assert value not in visible, f"{name}: {variable} outside its environment"


def test_no_literal_secrets(compose, services):
    for name, service in services.items():
        for variable, value in env(service).items():
            if SECRET_KEY.search(variable):
                assert value.startswith("${") and value.endswith("}"), f"{name}: {variable}"
    for text in strings(compose):
        for password in CREDENTIAL_URL.findall(text):
            assert password.startswith("${"), f"literal password in {text}"


def test_env_example_one_liner_makes_a_working_env(tmp_path, compose):
    """The generator .env.example documents replaces every placeholder with a fresh random value
    that Compose accepts, and gives Airflow a valid Fernet key."""
    from cryptography.fernet import Fernet

    text = ENV_EXAMPLE.read_text()
    (line,) = [ln for ln in text.splitlines() if "python3 -c" in ln]
    one_liner = line.lstrip("# ").strip()
    (tmp_path / ".env.example").write_text(text)
    done = subprocess.run(
        ["bash", "-c", one_liner.replace("python3", shlex_quote(sys.executable), 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    values = compose_spec.read_env_file(tmp_path / ".env")
    secrets = {k: v for k, v in values.items() if k not in NOT_SECRET}
    assert set(secrets) == set(REQUIRED_ENV)
    assert "CHANGE_ME" not in (tmp_path / ".env").read_text()
    assert len(set(secrets.values())) == len(secrets), "two secrets got the same value"
    Fernet(secrets["AIRFLOW_FERNET_KEY"].encode())
    for name, value in secrets.items():
        assert re.fullmatch(r"[A-Za-z0-9_=-]{32,}", value), name
    compose_spec.validate(compose_spec.interpolate_tree(compose, values))


def test_env_is_git_ignored_and_its_template_is_not():
    def ignored(path: str) -> bool:
        done = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, check=False
        )
        return done.returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")


# -- who can reach what ------------------------------------------------------------------------


def test_only_the_user_interfaces_are_published_on_candlecast_bind(services, resolved_services):
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == set(PUBLISHED), published
    for name, port in PUBLISHED.items():
        (raw,) = services[name]["ports"]
        assert raw.startswith("${CANDLECAST_BIND:-127.0.0.1}:"), name
        (resolved,) = resolved_services[name]["ports"]
        assert resolved.split(":")[:2] == ["127.0.0.1", str(port)], name
    for name in ("postgres", "redis", "prometheus"):
        assert "ports" not in services[name] and "network_mode" not in services[name], name
    bound = compose_spec.interpolate_tree(services, REQUIRED_ENV | {"CANDLECAST_BIND": "10.0.0.5"})
    assert bound["grafana"]["ports"] == ["10.0.0.5:3001:3000"]


def test_workers_scale(services):
    """`docker compose up --scale airflow-worker=N`: nothing fixes a worker's name or host port,
    and nothing refers to one worker by name."""
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert not any("container_name" in service for service in services.values())
    for name, service in services.items():
        assert "airflow-worker" not in (service.get("depends_on") or {}), name


def test_every_long_running_service_has_a_health_check(services):
    for name, service in services.items():
        if service.get("restart") == "no":  # one-shot: airflow-init
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} has no health check"


def test_depends_on_waits_for_health_or_completion(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            condition = spec.get("condition")
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert "healthcheck" in services[target], f"{name} -> {target}"


def test_airflow_requires_a_login_and_not_everyone_is_admin(airflow):
    variables = env(airflow["airflow-apiserver"])
    assert variables["AIRFLOW__CORE__AUTH_MANAGER"].endswith(
        "simple_auth_manager.SimpleAuthManager"
    )
    assert variables["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    users = dict(
        u.split(":") for u in variables["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert users["admin"] == "admin" and set(users.values()) - {"admin"}, users
    # airflow-init writes the password file the API server reads, on a volume they share.
    passwords = PurePosixPath(variables["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    init = airflow["airflow-init"]
    for service in (init, airflow["airflow-apiserver"]):
        assert mounts(service).get(str(passwords.parent)) == "airflow-auth"
    for user in users:
        assert env(init)[f"AIRFLOW_{user.upper()}_PASSWORD"].startswith("${"), user


@pytest.mark.slow
def test_airflow_init_writes_the_declared_logins(airflow, tmp_path):
    """deploy/airflow/init.sh run for real (airflow db migrate on a throwaway SQLite
    database): the password file holds the passwords .env declares, and Airflow's simple auth
    manager reads exactly those."""
    init = airflow["airflow-init"]
    script = mounted_script(init)
    passwords = {"admin": "admin-pass-123456", "viewer": "viewer-pass-123456"}
    variables = {
        k: v for k, v in env(init).items() if k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER")
    }
    password_file = tmp_path / "auth" / "passwords.json"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    run_env = (
        clean
        | variables
        | {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
            "AIRFLOW_ADMIN_PASSWORD": passwords["admin"],
            "AIRFLOW_VIEWER_PASSWORD": passwords["viewer"],
        }
    )
    done = subprocess.run(
        ["sh", str(script)], env=run_env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(password_file.read_text()) == passwords
    assert password_file.stat().st_mode & 0o077 == 0
    read = subprocess.run(
        [
            str(BIN / "python"),
            "-c",
            "import json; from airflow.api_fastapi.auth.managers.simple.simple_auth_manager "
            "import SimpleAuthManager as M; print(json.dumps(M.get_passwords()))",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert read.returncode == 0, read.stderr[-2000:]
    assert json.loads(read.stdout.strip().splitlines()[-1]) == passwords

    missing = run_env | {"AIRFLOW_VIEWER_PASSWORD": ""}
    failed = subprocess.run(
        ["sh", str(script)], env=missing, capture_output=True, text=True, timeout=600, check=False
    )
    assert failed.returncode != 0 and "AIRFLOW_VIEWER_PASSWORD" in failed.stderr


def test_mlflow_requires_a_login(services, candlecast_services, monkeypatch):
    mlflow = services["mlflow"]
    args = command(mlflow)
    assert option(args, "--app-name") == "basic-auth"
    variables = env(mlflow)
    ini = mounts(mlflow)[variables["MLFLOW_AUTH_CONFIG_PATH"]]
    assert variables["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert variables["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${")
    # The installed MLflow reads the mounted file: its admin is the user the pipeline logs in
    # as, and its user store is on a volume (it survives a restart).
    from mlflow.server.auth.config import read_auth_config

    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(REPO / ini))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    config = read_auth_config()
    assert config.admin_password is None, "a password in the repository"
    for name, service in candlecast_services.items():
        assert env(service)["MLFLOW_TRACKING_USERNAME"] == config.admin_username, name
        assert env(service)["MLFLOW_TRACKING_PASSWORD"] == variables["MLFLOW_AUTH_ADMIN_PASSWORD"]
    store = PurePosixPath(config.database_uri.removeprefix("sqlite:///"))
    assert config.database_uri.startswith("sqlite:////")
    assert mounts(mlflow).get(str(store.parent)) == "mlflow-auth"


@pytest.mark.slow
def test_mlflow_server_with_the_compose_auth_settings_refuses_anonymous_requests(
    resolved_services, tmp_path
):
    """`mlflow server --app-name basic-auth` started for real with the compose file's auth
    config and environment (only the stores moved to local files): /health is open, the API
    answers 401 without a login, 401 with a wrong one, and 200 for the pipeline's login."""
    import base64
    import urllib.error

    mlflow = resolved_services["mlflow"]
    variables = env(mlflow)
    ini = REPO / mounts(mlflow)[variables["MLFLOW_AUTH_CONFIG_PATH"]]
    local_ini = tmp_path / "basic_auth.ini"
    local_ini.write_text(
        re.sub(
            r"^database_uri = .*$",
            f"database_uri = sqlite:///{tmp_path / 'auth.db'}",
            ini.read_text(),
            flags=re.M,
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = os.environ | {
        "MLFLOW_AUTH_CONFIG_PATH": str(local_ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": variables["MLFLOW_AUTH_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": variables["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    args = command(mlflow)
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--artifacts-destination") + 1] = str(tmp_path / "artifacts")
    args[0] = str(BIN / "mlflow")

    def status(user: str | None, password: str = "") -> int:
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1")
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    pipeline = resolved_services["predictor"]["environment"]
    log_path = tmp_path / "mlflow.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            args, cwd=tmp_path, env=server_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: answers(f"{base}/health"), server, f"mlflow server ({log_path})")
            assert status(None) == 401
            assert status(pipeline["MLFLOW_TRACKING_USERNAME"], "wrong-password") == 401
            login = (pipeline["MLFLOW_TRACKING_USERNAME"], pipeline["MLFLOW_TRACKING_PASSWORD"])
            assert status(*login) == 200
        finally:
            server.terminate()
            server.wait(timeout=60)


def test_grafana_requires_a_login(services):
    variables = env(services["grafana"])
    assert variables["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert variables["GF_SECURITY_SECRET_KEY"].startswith("${GRAFANA_SECRET_KEY:?")
    assert variables["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert variables["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_prediction_service_requires_api_keys(resolved_services, airflow, monkeypatch):
    """The service's own key loader, given the predictor's environment, accepts the users',
    the pipeline's and Prometheus' keys, and the pipeline sends one of them."""
    predictor = resolved_services["predictor"]["environment"]
    monkeypatch.delenv("CANDLECAST_API_KEYS_FILE", raising=False)
    monkeypatch.setenv("CANDLECAST_API_KEYS", predictor["CANDLECAST_API_KEYS"])
    keys = set(load_keys())
    expected = {
        REQUIRED_ENV[name].encode()
        for name in ("CANDLECAST_API_KEYS", "CANDLECAST_PIPELINE_API_KEY", "PROMETHEUS_API_KEY")
    }
    assert keys == expected
    worker = resolved_services["airflow-worker"]["environment"]
    monkeypatch.setenv("CANDLECAST_API_KEYS", worker["CANDLECAST_API_KEYS"])
    assert set(load_keys()) <= keys and load_keys()
    assert worker["CANDLECAST_SERVICE_URL"] == "http://predictor:3000"
    assert env(airflow["airflow-worker"])["CANDLECAST_API_KEYS"].startswith("${")


def test_readme_production_section_says_how_to_log_in():
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Production\n(.*?)(?=^## )", readme, re.M | re.S)
    assert match, "README.md has no Production section"
    section = match.group(1)
    for port in PUBLISHED.values():
        assert f"127.0.0.1:{port}" in section, port
    for needle in (
        "cp .env.example .env",
        "--scale airflow-worker=",
        "pg_dump",
        "pg_restore",
        "AIRFLOW_ADMIN_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "CANDLECAST_API_KEYS",
    ):
        assert needle in section, needle


# -- docker compose itself (only where the plugin is installed) --------------------------------


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="docker compose plugin not installed")
def test_docker_compose_config_validates():
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    run = ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"]
    done = subprocess.run(
        run,
        cwd=REPO,
        env=base | REQUIRED_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if (REPO / ".env").exists():  # it may supply the secrets
        return
    missing = subprocess.run(
        run, cwd=REPO, env=base, capture_output=True, text=True, timeout=60, check=False
    )
    assert missing.returncode != 0 and "AIRFLOW_JWT_SECRET" in missing.stderr


def test_airflow_database_drivers_are_installed(resolved_services):
    """Airflow 3 opens a sync and an async connection: both URLs must name a driver this
    image installs (with psycopg2 alone in the sync URL, Airflow picks asyncpg for the async
    one, which is not installed, and every airflow command fails at import)."""
    import importlib.util

    drivers = {"postgresql+psycopg2": "psycopg2", "postgresql+psycopg": "psycopg"}
    for name, service in resolved_services.items():
        if not name.startswith("airflow-"):
            continue
        variables = env(service)
        for key in (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
        ):
            scheme = variables[key].split("://", 1)[0]
            assert scheme in drivers, f"{name}: {key} uses {scheme}"
            assert importlib.util.find_spec(drivers[scheme]), f"{drivers[scheme]} not installed"
