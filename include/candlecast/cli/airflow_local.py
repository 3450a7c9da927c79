"""``candlecast airflow``: the embedded Airflow of one machine.

API server (UI and REST API), scheduler, DAG processor and triggerer as local processes, each
in its own process group; SQLite metadata DB, logs, generated passwords and secrets under the
data directory (``$CANDLECAST_HOME/airflow``); LocalExecutor with one task per core; listening
on 127.0.0.1 unless told otherwise, behind the simple auth manager's login. Pools are created
(idempotently) before the scheduler starts: ``exchange_<id>`` per configured exchange and
``candlecast_training`` (one slot per ``CANDLECAST_FIT_THREADS`` cores). Ctrl-C or SIGTERM
stops every process it started, with their children.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from candlecast.cli import embedded
from candlecast.cli.airflow_api import AirflowClient
from candlecast.cli.app import app, console
from candlecast.config import PairsConfig, load_pairs
from candlecast.errors import ConfigError
from candlecast.names import TRAINING_POOL, exchange_pool
from candlecast.settings import Settings, get_settings

#: Signals that stop what was started (SIGHUP: the terminal closed).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The processes of an Airflow 3 deployment, in start order.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Components that would start a log server for remote workers.
SERVES_LOGS = ("scheduler", "triggerer")
#: Concurrent fetch tasks per exchange (the exchange's rate limit is the bound, not the CPU).
EXCHANGE_POOL_SLOTS = 2
#: A loaded 2-core machine takes minutes to start Airflow: a deadline, not a race.
READY_TIMEOUT_S = 900.0


class Interrupted(Exception):  # noqa: N818 - a request to stop, not an error
    """SIGINT or SIGTERM arrived: stop what was started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM/SIGHUP into :class:`Interrupted` (so ``finally`` blocks
    stop the processes) and ignore further ones while that happens."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def pools(config: PairsConfig, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """The pools the DAGs use, in ``airflow pools import`` form: fetch slots per exchange, and
    as many training slots as the cores hold fits (``Settings.training_pool_slots``)."""
    settings = settings or get_settings()
    found = {
        exchange_pool(pair.exchange): {
            "slots": EXCHANGE_POOL_SLOTS,
            "description": f"candlecast: concurrent fetches from {pair.exchange}",
            "include_deferred": False,
        }
        for pair in config.pairs
    }
    found[TRAINING_POOL] = {
        "slots": settings.training_pool_slots,
        "description": f"candlecast: model fits, {settings.fit_threads} thread(s) each",
        "include_deferred": False,
    }
    return found


def check_port_free(host: str, port: int) -> None:
    """Raise a clear error when ``host:port`` cannot be listened on."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # as the server will: a port whose last connections linger in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(
                f"cannot listen on {host}:{port} ({exc.strerror}): is another Airflow or "
                "service using it? Choose another with --port"
            ) from None


@dataclass
class EmbeddedAirflow:
    """One embedded Airflow deployment: prepare, start, wait until ready, stop."""

    settings: Settings
    host: str
    port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: Settings, host: str | None = None, port: int | None = None
    ) -> EmbeddedAirflow:
        return cls(settings, host or settings.airflow_host, port or settings.airflow_port)

    @property
    def url(self) -> str:
        return embedded.airflow_base_url(self.host, self.port)

    @property
    def env(self) -> dict[str, str]:
        return embedded.airflow_env(self.settings, self.host, self.port)

    def log(self, component: str) -> Path:
        return self.settings.paths.logs / f"airflow-{component}.log"

    def prepare(self, config: PairsConfig) -> None:
        """Migrate the metadata DB and create the pools (both idempotent)."""
        check_port_free(self.host, self.port)
        env = self.env
        embedded.airflow("db", "migrate", settings=self.settings, env=env)
        self.import_pools(config, env)

    def import_pools(self, config: PairsConfig, env: dict[str, str]) -> None:
        """Create or resize the config's pools (``airflow pools import``, idempotent)."""
        spec = self.settings.paths.airflow / "pools.json"
        spec.write_text(json.dumps(pools(config, self.settings), indent=2, sort_keys=True) + "\n")
        embedded.airflow(
            "pools", "import", str(spec), settings=self.settings, env=env, log_name="pools-import"
        )

    def start(self) -> None:
        env = self.env
        for component in COMPONENTS:
            command = [str(embedded.BIN / "airflow"), component]
            if component in SERVES_LOGS:
                # task logs are local files the API server reads; a log server would listen
                # on all interfaces at a fixed port (and clash with a second deployment)
                command.append("--skip-serve-logs")
            self.procs[component] = embedded.start(command, self.log(component), env)

    def check_alive(self) -> None:
        """Raise naming the first component that exited, with its log."""
        embedded.check_running(
            ((f"Airflow {c}", proc, self.log(c)) for c, proc in self.procs.items()), tail=2000
        )

    def health(self) -> dict[str, Any]:
        return dict(embedded.get_json(f"{self.url}/api/v2/monitor/health"))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until the API answers and the scheduler, DAG processor and triggerer beat.

        Raises:
            RuntimeError: a component exited (its log named).
            TimeoutError: not ready within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        waiting: list[str] = ["api-server"]
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                health = self.health()
            except OSError:
                time.sleep(1)
                continue
            waiting = [
                part
                for part in ("scheduler", "dag_processor", "triggerer")
                if (health.get(part) or {}).get("status") != "healthy"
            ]
            if not waiting:
                return
            time.sleep(1)
        raise TimeoutError(
            f"Airflow not ready within {timeout:.0f} s (waiting for {', '.join(waiting)}); "
            f"logs in {self.settings.paths.logs}"
        )

    def watch(self, poll_s: float = 2.0, say: Callable[[str], None] = print) -> None:
        """Block while every component runs (until a signal, or one exits). An edit of the
        pair config is applied as soon as it is seen (:meth:`apply_config`); ``say`` is told
        what was done, or the one-line error of a config that does not load."""
        config = ConfigFile(self.settings.pairs)
        while True:
            self.check_alive()
            if config.changed():
                try:
                    say(self.apply_config(config.dag_ids))
                    config.applied()
                except ConfigError as exc:
                    say(f"{exc} (the DAGs stay as they were until the config loads)")
            time.sleep(poll_s)

    def apply_config(self, known: Iterable[str] = ()) -> str:
        """Apply the edited pair config now: its pools imported and the DAG file re-parsed at
        once (the DAG processor parses it on its own only every
        ``AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL``, long because a file of hundreds
        of streams takes seconds to parse). ``known``: DAG ids Airflow may know from the config
        before (whose file is the one to re-parse when the edit left none of them). Returns
        what was done, in one line.

        Raises:
            ConfigError: the config does not load (nothing is changed).
        """
        config = load_pairs(self.settings.pairs)
        self.import_pools(config, self.env)
        parsed = self.client().reparse([*all_dag_ids(config), *known])
        label = f"{self.settings.pairs} changed ({len(config.pairs)} streams): pools imported"
        if parsed is None:
            return f"{label}; its DAGs appear at the DAG processor's next parse"
        return f"{label}, DAG file re-parsing now"

    def stop(self, timeout: float = 120.0) -> list[int]:
        """Stop every component and its children (SIGTERM, then SIGKILL after ``timeout``)."""
        with ignoring_signals():
            killed = embedded.stop(list(self.procs.values()), timeout)
        self.procs.clear()
        return killed

    def client(self, user: str = "admin") -> AirflowClient:
        return AirflowClient(self.url, user, embedded.airflow_password(self.settings, user))

    def login_hint(self, user: str = "admin") -> str:
        password = embedded.airflow_password(self.settings, user)
        return f"log in as {user} / {password} (kept in {embedded.passwords_file(self.settings)})"


def all_dag_ids(config: PairsConfig) -> list[str]:
    """Every DAG the config's streams have (candles, train, monitor)."""
    return [dag for p in config.pairs for dag in p.stream.dag_ids]


@dataclass
class ConfigFile:
    """The pair config file as last applied, to notice an edit (by content: a save that
    leaves it as it was is no edit) and name the DAGs it had."""

    path: Path
    _stat: tuple[int, int] | None = None
    _digest: str = ""
    dag_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed()
        self.applied()

    def changed(self) -> bool:
        """Whether the file's content differs from what was last seen (checked by its size
        and modification time first, so polling reads nothing while it is unchanged)."""
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
            if seen == self._stat:
                return False
            self._stat = seen
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return False  # being replaced: the next poll sees the new file
        if digest == self._digest:
            return False
        self._digest = digest
        return True

    def applied(self) -> None:
        """Remember the DAGs of the config as it is now (it loaded and was applied)."""
        with suppress(ConfigError):
            self.dag_ids = all_dag_ids(load_pairs(self.path))


@contextmanager
def ignoring_signals() -> Iterator[None]:
    """Let nothing interrupt a shutdown half-way."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def running(airflow: EmbeddedAirflow, config: PairsConfig) -> Iterator[EmbeddedAirflow]:
    """Prepare, start and wait for the embedded Airflow; stop it on the way out."""
    airflow.prepare(config)
    try:
        airflow.start()
        airflow.wait_ready()
        yield airflow
    finally:
        airflow.stop()


@app.command("airflow", rich_help_panel="Operations")
def airflow_command(
    port: Annotated[int | None, typer.Option(help="default: CANDLECAST_AIRFLOW_PORT")] = None,
    host: Annotated[str | None, typer.Option(help="default: CANDLECAST_AIRFLOW_HOST")] = None,
) -> None:
    """Start the embedded Airflow (API server and UI, scheduler, DAG processor, triggerer) for
    the configured streams, until Ctrl-C; state and logs under the data directory."""
    settings = get_settings()
    try:
        config = load_pairs(settings.pairs)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    local = EmbeddedAirflow.from_settings(settings, host, port)
    console.print(f"Starting Airflow on {local.url} (state and logs in {settings.paths.airflow})")
    with stop_on_signals():
        try:
            with running(local, config):
                console.print(f"Airflow UI: {local.url}  - {local.login_hint()}")
                console.print("Press Ctrl-C to stop.")
                local.watch(say=lambda line: console.print(line, markup=False))
        except Interrupted as stop:
            console.print(f"{stop}: stopped every Airflow process")
        except (ValueError, RuntimeError, TimeoutError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
