"""The embedded (laptop) mode: Airflow, MLflow UI and the BentoML service as local processes,
all keeping their state under the data directory.

Every process is started in its own process group (session), so :func:`stop` can end it with
all of its children (LocalExecutor workers, task processes, uvicorn workers), and a Ctrl-C in
the terminal reaches only the candlecast command, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from candlecast.config import PairConfig
from candlecast.serving.endpoint import record_endpoint
from candlecast.serving.feature_reader import parse_address
from candlecast.settings import REPO_ROOT, Settings, get_settings

BIN = Path(sys.executable).parent

#: Simple auth manager users of the embedded Airflow (``name:role``); passwords are generated.
AIRFLOW_USERS = ("admin:admin",)
#: LocalExecutor processes: by default one task per core (at least two); a task is a whole
#: Python process that imports Feast, MLflow or LightGBM. ``AIRFLOW__CORE__PARALLELISM`` in the
#: environment overrides it: many sub-hourly streams, whose short tasks spend most of their wall
#: time waiting on the API server and the scheduler, want more (``bench/bench_streams.py
#: --live``).
AIRFLOW_MIN_PARALLELISM = 2


def airflow_home(settings: Settings) -> Path:
    return settings.paths.airflow


def passwords_file(settings: Settings) -> Path:
    """The simple auth manager's generated passwords (JSON ``{user: password}``, mode 0600)."""
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def _secret_file(path: Path, make: Any) -> str:
    """Read a secret kept in ``path``, creating it (owner-only) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


def ensure_secrets(settings: Settings) -> dict[str, str]:
    """The JWT and API secrets every Airflow component must share, and the users' passwords
    file; generated once and kept under the Airflow home (owner-only files)."""
    home = airflow_home(settings)
    users = [user.split(":")[0] for user in AIRFLOW_USERS]
    _secret_file(
        passwords_file(settings),
        lambda: json.dumps({user: secrets.token_urlsafe(16) for user in users}) + "\n",
    )
    return {
        "jwt": _secret_file(home / "jwt_secret", lambda: secrets.token_urlsafe(48)),
        "api": _secret_file(home / "api_secret_key", lambda: secrets.token_urlsafe(48)),
    }


def airflow_password(settings: Settings, user: str = "admin") -> str:
    """The generated password of an embedded Airflow user.

    Raises:
        KeyError: no password for ``user`` in the passwords file.
    """
    passwords = json.loads(passwords_file(settings).read_text())
    if user not in passwords:
        raise KeyError(f"no password for Airflow user {user!r} in {passwords_file(settings)}")
    return str(passwords[user])


def airflow_base_url(host: str, port: int) -> str:
    """Where clients reach an API server listening on ``host``: a wildcard address is reached
    through the loopback."""
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{reach}:{port}"


def metadata_database(settings: Settings) -> dict[str, str]:
    """Airflow's settings for the embedded metadata database: SQLite under the data directory,
    or ``settings.airflow_database``. A PostgreSQL URL gets the drivers installed here:
    psycopg2 for the engine and psycopg 3 for the async one (Airflow would derive asyncpg)."""
    url = settings.airflow_database
    if url is None:
        sqlite = f"sqlite:///{airflow_home(settings) / 'airflow.db'}?timeout=60"
        return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlite}
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{rest}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg://{rest}",
    }


def airflow_env(
    settings: Settings | None = None, host: str | None = None, port: int | None = None
) -> dict[str, str]:
    """Environment for Airflow commands in embedded mode: SQLite (unless
    ``settings.airflow_database`` names another) and logs under the data directory, LocalExecutor
    sized to the machine (unless it sets ``AIRFLOW__CORE__PARALLELISM``), DAGs and plugins
    from this repo, the simple auth manager with generated passwords (never all-admins), and
    the API server's address (``host``/``port``, default the settings') for the UI and for
    task runners' execution API.
    """
    settings = settings or get_settings()
    home = airflow_home(settings)
    host = host or settings.airflow_host
    port = port or settings.airflow_port
    base_url = airflow_base_url(host, port)
    secret = ensure_secrets(settings)
    # A task's parsing context (left in os.environ by a task or dag.test() that started this
    # process) would make the new DAG processor build that one DAG only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", None)
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # load the plugin at start-up, so the scheduler imports the tasks' libraries before it
    # forks its workers (candlecast.orchestration.preload)
    env.setdefault("AIRFLOW__CORE__LAZY_LOAD_PLUGINS", "False")
    env.setdefault(
        "AIRFLOW__CORE__PARALLELISM", str(max(AIRFLOW_MIN_PARALLELISM, os.cpu_count() or 1))
    )
    # Sizes and deadlines for a small machine, each the user's to change in the environment.
    # The DAG file of hundreds of streams takes seconds to parse, and its DAGs change only with
    # the pair config or the code: it is parsed every 10 minutes, at once when the file itself
    # changes (modified_time), and `candlecast airflow` asks for a parse when the config does
    for key, value in {
        "AIRFLOW__API__WORKERS": "1",
        # a loaded 2-core machine parses and imports slowly: deadlines, not races
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
    }.items():
        env.setdefault(key, value)
    # The metadata database: one SQLite file under the data directory, whose writers wait for
    # the lock (up to a minute on a loaded machine) instead of failing at Python's default
    # 5 s; or the one CANDLECAST_AIRFLOW_DATABASE names (Airflow's own variable is not taken
    # from the environment: one set for another Airflow must not be migrated by this one)
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", None)
    env.update(metadata_database(settings))
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(AIRFLOW_USERS),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
            "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt"],
            "AIRFLOW__API__SECRET_KEY": secret["api"],
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "CANDLECAST_HOME": str(settings.paths.home),
            "CANDLECAST_PAIRS": str(settings.pairs),
        }
    )
    return env


def airflow(
    *args: str,
    settings: Settings | None = None,
    env: dict[str, str] | None = None,
    log_name: str | None = None,
) -> Path:
    """Run an ``airflow`` CLI command in embedded mode, its output going to a log file under
    the data directory (``airflow-<log_name or the arguments>.log``); returns the log. Raises
    with the log's tail if the command fails."""
    settings = settings or get_settings()
    settings.paths.airflow.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", log_name or "-".join(args))[:120]
    log = settings.paths.logs / f"airflow-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        done = subprocess.run(
            [str(BIN / "airflow"), *args],
            env=env or airflow_env(settings),
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}); {log}:\n{tail}")
    return log


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a background process in its own process group, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or dict(os.environ),
            start_new_session=True,
        )


def check_running(watched: Iterable[tuple[str, subprocess.Popen, Path]], tail: int = 0) -> None:
    """Raise naming the first of ``(name, process, log)`` that exited: its exit code, its log
    and, with ``tail``, the log's last ``tail`` characters (what a user reads first).

    Raises:
        RuntimeError: a watched process is no longer running.
    """
    for name, proc, log in watched:
        if proc.poll() is None:
            continue
        last = log.read_text(errors="replace")[-tail:] if tail and log.exists() else ""
        raise RuntimeError(
            f"{name} exited with code {proc.returncode}; its log: {log}"
            + (f"\n{last}" if last else "")
        )


def _tree(procs: Iterable[subprocess.Popen]) -> list[Any]:
    """The processes and all their descendants that are still alive (psutil processes)."""
    import psutil

    found: dict[int, Any] = {}
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            for member in [root, *root.children(recursive=True)]:
                found[member.pid] = member
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def _signal(procs: list[Any], sig: int) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def stop(procs: list[subprocess.Popen], timeout: float = 120.0) -> list[int]:
    """Stop processes started by :func:`start` with everything they started.

    First SIGTERM to each process alone, so it shuts its own children down in order (the
    LocalExecutor hands its workers a poison pill; a worker killed first can leave the queue
    locked and the scheduler waiting forever); after ``timeout`` s, SIGTERM to every process
    left in their trees and groups, then SIGKILL after another ``timeout / 4`` s.

    Returns:
        The pids that did not end on the first SIGTERM.
    """
    import psutil

    members = _tree(procs)
    _signal([m for m in members if m.pid in {p.pid for p in procs}], signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    stubborn = [member.pid for member in alive]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [m for m in _tree(procs) if m.is_running()] + [m for m in alive if m.is_running()]
        for proc in procs:  # the groups hold children that left the trees (re-parented)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        _signal(alive, sig)
        _, alive = psutil.wait_procs(alive, timeout=timeout / 4)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    return stubborn


def wait_http(url: str, timeout: float = 600.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 2xx (or raise naming the URL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status < 300:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def bentoml_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` of the service, its process manager reachable by its owner only
    (:mod:`candlecast.serving.arbiter`)."""
    return [
        str(BIN / "python"),
        "-m",
        "candlecast.serving.arbiter",
        "serve",
        "service:Candlecast",
        "--working-dir",
        str(REPO_ROOT / "serving"),
        "--host",
        host,
        "--port",
        str(port),
    ]


#: Marks of a process of this project's service: BentoML's server (through
#: :mod:`candlecast.serving.arbiter` or not), its circus arbiter and workers, started for
#: ``service:Candlecast``.
SERVICE_MARKS = ("bentoml", "circus", "_bentoml_impl", "candlecast.serving.arbiter")


def replace_orphans(port: int) -> list[int]:
    """Stop what is left of an earlier candlecast service on ``port``: a ``bentoml serve``
    killed with -9 leaves its circus arbiter and workers holding the port, and a restart would
    fail with "Address already in use". Processes listening on the port whose command line is
    BentoML's or circus's serving ``service:Candlecast`` (theirs or a child's) are stopped with
    their children (SIGTERM, then SIGKILL after 10 s), and so is the feature reader process
    they used (found by the address BentoML gave their workers, ``BENTOML_RUNNER_MAP``: it
    does not listen on the port). Returns their pids; anything else on the port is left alone
    (BentoML then says the address is in use)."""
    import psutil

    victims: dict[int, psutil.Process] = {}
    for pid in _listeners(port):
        try:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
            lines = [" ".join(member.cmdline()) for member in family]
        except psutil.Error:
            continue
        ours = any("service:Candlecast" in line for line in lines)
        if ours and any(mark in lines[0] for mark in SERVICE_MARKS):
            victims |= {member.pid: member for member in family}
    for pid in _dependencies(list(victims.values())) - set(victims):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            line = " ".join(proc.cmdline())
            if "service:Candlecast" in line and any(mark in line for mark in SERVICE_MARKS):
                victims[pid] = proc
    for proc in victims.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(victims.values()), timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return sorted(victims)


def _listeners(port: int) -> set[int]:
    """The pids listening on the TCP ``port``."""
    import psutil

    return {
        conn.pid
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid
    }


def _dependencies(workers: list[Any]) -> set[int]:
    """The pids listening where the workers' BentoML dependencies are (their environment's
    ``BENTOML_RUNNER_MAP``: ``tcp://host:port`` or ``file:///path`` of a Unix socket)."""
    import psutil

    addresses: set[str] = set()
    for worker in workers:
        with contextlib.suppress(psutil.Error, ValueError):
            addresses |= set(json.loads(worker.environ().get("BENTOML_RUNNER_MAP", "{}")).values())
    found: set[int] = set()
    for url in addresses:
        try:
            address = parse_address(url)
        except ValueError:  # not a dependency this looks for (or a malformed port)
            continue
        if address.port:
            found |= _listeners(address.port)
        elif address.socket is not None:
            found |= {
                conn.pid
                for conn in psutil.net_connections(kind="unix")
                if conn.laddr == address.socket and conn.pid
            }
    return found


def bentoml_env(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or get_settings()
    env = dict(os.environ)
    env["CANDLECAST_HOME"] = str(settings.paths.home)
    env["CANDLECAST_PAIRS"] = str(settings.pairs)
    env["BENTOML_HOME"] = str(settings.paths.bentoml)
    env["BENTOML_DO_NOT_TRACK"] = "True"
    return env


#: :func:`latest_decision` of a stream never trained.
NO_PROMOTION = "no promotion yet"


def latest_decision(pair: PairConfig) -> str:
    """The promotion reason of the pair's latest training run, in one line."""
    from candlecast.modeling import mlflow_keys as keys
    from candlecast.modeling import registry

    registry.configure()
    runs = registry.search_runs(
        experiment_names=[pair.stream.experiment],
        filter_string=f"tags.`{keys.PROMOTION_REASON}` LIKE '%'",
        order_by=["start_time DESC"],
        max_results=1,
    )
    return str(runs[f"tags.{keys.PROMOTION_REASON}"].iloc[0]) if len(runs) else NO_PROMOTION


def mlflow_ui_command(settings: Settings) -> list[str]:
    """The MLflow UI on the address of ``settings.mlflow_ui_url`` (default 127.0.0.1:5000)."""
    url = urllib.parse.urlsplit(settings.mlflow_ui_url)
    return [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        settings.tracking_uri,
        "--host",
        url.hostname or "127.0.0.1",
        "--port",
        str(url.port or 5000),
    ]


def start_services(settings: Settings) -> list[subprocess.Popen]:
    """The prediction service and the MLflow UI in the background (logs under home); waits
    until the service is ready. The Airflow UI is :mod:`candlecast.cli.airflow_local`'s."""
    logs = settings.paths.logs
    host, port = settings.service_host, settings.service_port
    service = start(bentoml_command(host, port), logs / "bentoml.log", bentoml_env(settings))
    record_endpoint(f"http://{host}:{port}", service.pid, settings)
    mlflow_ui = start(mlflow_ui_command(settings), logs / "mlflow.log")
    procs = [service, mlflow_ui]
    try:
        wait_http(f"http://{host}:{port}/readyz", proc=service)
    except BaseException:
        stop(procs)
        raise
    return procs


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def get_json(url: str, timeout: float = 60) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())
