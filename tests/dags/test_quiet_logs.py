"""A healthy run logs no warning or error a user must learn to ignore.

Each of a stream's DAGs (a stream of their own: see conftest) runs as a user runs it,
``airflow dags test`` in a fresh process (library warnings that fire once per process, on
first import, show up only there): candles on backfilled history, train (every kind fitted,
the gate, export, deploy, the other targets), then monitor with that champion.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: A log line at WARNING or above, in structlog's console form (``[warning  ]``), the
#: standard library's (``WARNING``, ``ERROR:``) or a raw Python warning (``UserWarning:``).
NOISY = re.compile(
    r"\[\s*(warning|error|critical)\s*\]|\b(WARNING|ERROR|CRITICAL)\b|\w+Warning:|XCom not found"
)

#: Lines of ``airflow dags test``'s own process, which a task's log never holds: the CLI's
#: notice about graphviz, and Airflow's internals that run there only because the command
#: hosts them (the DAG bundle sync of the DAG processor, the Execution API server that a
#: scheduler-run task talks to over HTTP).
HARNESS = re.compile(
    r"Could not import graphviz|filename=\S*/site-packages/airflow/(dag_processing|api_fastapi)/"
)


def dags_test(dag_id: str, date: str, conf: dict | None = None) -> list[str]:
    airflow = Path(sys.executable).parent / "airflow"
    command = [str(airflow), "dags", "test", dag_id, date]
    if conf:
        command += ["--conf", json.dumps(conf)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 0, "\n".join(lines[-60:])
    return lines


def noisy(lines: list[str]) -> list[str]:
    return [line for line in lines if NOISY.search(line) and not HARNESS.search(line)]


@pytest.mark.parametrize(
    ("dag", "date"),
    [("candles", "2022-02-28"), ("train", "2022-03-01"), ("monitor", "2022-03-01")],
)
def test_a_healthy_run_logs_no_warning_or_error(in_own_stream, dag, date):
    pair, _, _ = in_own_stream
    dag_id = {
        "candles": pair.stream.candles_dag_id,
        "train": pair.stream.train_dag_id,
        "monitor": pair.stream.monitor_dag_id,
    }[dag]
    lines = dags_test(dag_id, date)
    assert any("state=success" in line or "success" in line.lower() for line in lines)
    assert noisy(lines) == [], f"{len(noisy(lines))} noisy lines:\n" + "\n".join(noisy(lines)[:40])
