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
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from candlecast.settings import Settings

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
#: Host port per service, as deploy/README.md documents them.
PUBLISHED = {
    "airflow-apiserver": 8080,
    "mlflow": 5000,
    "predictor": 3000,
    "prometheus": 9090,
    "grafana": 3001,
}
#: Environment the compose file requires (``${VAR:?}``); dummy values for `docker compose config`.
REQUIRED_ENV = {"AIRFLOW_JWT_SECRET": "test-jwt-secret", "GRAFANA_ADMIN_PASSWORD": "test-password"}
DASHBOARD_FILE = REPO / "deploy" / "grafana" / "dashboards" / "service-health.json"
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$")
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
    configs = {
        name: {k: v for k, v in env(svc).items() if k.startswith(("AIRFLOW", "CANDLECAST"))}
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
    for name, service in candlecast_services.items():
        variables = {k: v for k, v in env(service).items() if k.startswith("CANDLECAST_")}
        assert variables == CANDLECAST_ENV, name

    # Each variable is a real setting (a typo would be ignored: extra="ignore") and parses.
    fields = {f"CANDLECAST_{field.upper()}" for field in Settings.model_fields}
    assert set(CANDLECAST_ENV) <= fields, set(CANDLECAST_ENV) - fields
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
    assert command(services["airflow-init"]) == ["airflow", "db", "migrate"]


def test_published_ports(services):
    for name, host_port in PUBLISHED.items():
        published = {str(port).split(":")[0] for port in services[name].get("ports", [])}
        assert str(host_port) in published, f"{name} not published on {host_port}"


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


def test_mlflow_server_uses_its_own_database_and_serves_artifacts(services):
    service = services["mlflow"]
    args = command(service)
    assert args[:2] == ["mlflow", "server"]
    backend = urlsplit(option(args, "--backend-store-uri"))
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


def test_predictor_serves_on_3000_with_readiness_check(services):
    service = services["predictor"]
    args = command(service)
    assert args[:2] == ["candlecast", "serve"]
    assert option(args, "--port") == "3000" and option(args, "--host") == "0.0.0.0"
    assert "3000:3000" in [str(port) for port in service["ports"]]
    assert "http://localhost:3000/readyz" in " ".join(service["healthcheck"]["test"])


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
            assert re.search(r"\bbentoml_\w+", expr), f"{panel['title']}: {expr}"
            assert set(re.findall(r'\bjob="([^"]+)"', expr)) <= jobs, panel["title"]


@pytest.mark.slow
def test_dashboard_queries_name_metrics_bentoml_exposes(dashboard, bentoml_metrics):
    """Every panel queries metrics by names and labels that the installed BentoML really exposes
    on /metrics, so a rename upstream fails here, not on an empty dashboard."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\bbentoml_\w+", expr))
            assert names, f"{panel['title']}: no BentoML metric in {expr}"
            unknown = names - set(bentoml_metrics)
            assert not unknown, f"{panel['title']}: BentoML exposes no {unknown}"
            allowed = set.union(*(bentoml_metrics[name] for name in names)) | {"job", "instance"}
            labels = promql_labels(expr)
            assert labels <= allowed, f"{panel['title']}: unknown labels {labels - allowed}"


# -- secrets -----------------------------------------------------------------------------------


def test_no_literal_secrets(compose, services):
    for name, service in services.items():
        for variable, value in env(service).items():
            if SECRET_KEY.search(variable):
                assert value.startswith("${") and value.endswith("}"), f"{name}: {variable}"
    for text in strings(compose):
        for password in CREDENTIAL_URL.findall(text):
            assert password.startswith("${"), f"literal password in {text}"
    # No default for the real secrets: compose refuses to start without them.
    assert env(services["airflow-scheduler"])["AIRFLOW__API_AUTH__JWT_SECRET"].startswith(
        "${AIRFLOW_JWT_SECRET:?"
    )
    assert env(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )


def test_readme_documents_the_urls():
    readme = (REPO / "deploy" / "README.md").read_text()
    for port in PUBLISHED.values():
        assert f"localhost:{port}" in readme, port
    for variable in REQUIRED_ENV:
        assert variable in readme


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
