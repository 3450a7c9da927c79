"""Library noise is silenced where it starts, so a healthy task log holds no warning or error
a user must learn to ignore (the full check: tests/dags/test_quiet_logs.py)."""

import logging
import os
import subprocess
import sys

from candlecast.modeling import registry
from tests.helpers import REPO, settings_in


def test_mlflow_logs_reach_the_hosts_logging_not_stderr(tmp_path, caplog, capfd):
    # Airflow's task runner logs a task's stderr at ERROR: MLflow's own stderr handler made
    # its ordinary INFO lines ("Created version ...") read as errors
    registry.configure(settings_in(tmp_path))
    assert logging.getLogger("mlflow").handlers == []
    caplog.clear()
    with caplog.at_level(logging.INFO):
        logging.getLogger("mlflow.store.model_registry").info("Created version '2'")
    assert [r.getMessage() for r in caplog.records] == ["Created version '2'"]
    assert "Created version" not in capfd.readouterr().err


SKOPS_IN_A_TASK_PROCESS = """
import warnings
import airflow.sdk, airflow.utils.timezone  # the compatibility shims a task process has loaded
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from candlecast.modeling.registry import import_skops
    import_skops()
print("WARNINGS", len([w for w in caught if "airflow" in str(w.message)]))
"""


def test_skops_is_imported_without_a_warning_per_scipy_ufunc_and_airflow_shim():
    # a fresh process: skops looks every scipy.special ufunc up in every loaded module once,
    # on import, and Airflow's deprecated-name modules warn on each lookup
    done = subprocess.run(
        [sys.executable, "-c", SKOPS_IN_A_TASK_PROCESS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNINGS 0" in done.stdout


MLFLOW_STORE_WITH_WARNINGS_ON = """
import sys, warnings
warnings.simplefilter("always")  # as a host that turns deprecation warnings back on
from candlecast.modeling import registry
from tests.helpers import settings_in
from pathlib import Path
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    registry.configure(settings_in(Path(sys.argv[1])))
print("WARNINGS", [str(w.message)[:80] for w in caught if "noload" in str(w.message)])
"""


def test_mlflow_store_is_created_without_sqlalchemys_noload_deprecation(tmp_path):
    # the one warning a healthy `candlecast run` still printed: MLflow's SQL store module
    # triggers it at import, so a fresh process is needed to see it
    done = subprocess.run(
        [sys.executable, "-c", MLFLOW_STORE_WITH_WARNINGS_ON, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNINGS []" in done.stdout


CLI_WITH_DUCKDB_LOADED = """
import atexit, sys
import duckdb  # loaded as Feast's offline store loads it
atexit.register(lambda: print("atexit handlers ran"))
sys.argv = ["candlecast", *sys.argv[1:]]
from candlecast.cli.main import main
main()
"""


def test_the_cli_keeps_its_exit_status_output_and_exit_handlers_without_duckdbs_teardown(
    tmp_path,
):
    # with DuckDB loaded the entry point skips the interpreter's teardown (where nanobind prints
    # its benign "leaked" report): what a normal exit does before it must still happen
    env = {**os.environ, "CANDLECAST_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", CLI_WITH_DUCKDB_LOADED, *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    refused = cli("gaps", "--pair", "NOPE/USD")
    assert refused.returncode == 2 and "NOPE/USD" in refused.stdout  # a usage error
    assert refused.stdout.rstrip().endswith("atexit handlers ran")
    fine = cli("--version")
    assert (fine.returncode, fine.stdout.splitlines()[-1]) == (0, "atexit handlers ran")
    assert fine.stdout.startswith("candlecast ") and "nanobind" not in fine.stderr
