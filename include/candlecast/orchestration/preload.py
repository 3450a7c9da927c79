"""Warm task start-up: import the stages' heavy libraries once in the process Airflow forks
task processes from.

On Linux, the LocalExecutor's workers are forked from the scheduler, a Celery worker forks its
pool, and each task process is a bare fork of its supervisor: a module imported before the fork
is already in every task. Without this, every task imports Feast (which pulls in torch),
MLflow, Great Expectations, LightGBM and BentoML again, 3-15 s per task, which is most of what
Airflow added to a day's runs (``bench/bench_airflow_overhead.py``).

Only imports and the pair config: no connection, thread pool or store is opened before the
fork. Off with ``CANDLECAST_PRELOAD=0``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: What the stages import when they run, heaviest first.
MODULES = (
    "feast",
    # Feast imports its stores' modules when a RepoConfig names them, and the online stores
    # it knows at the first online read: 1.3 s of every task's materialize before these were
    # preloaded (bench/bench_streams.py)
    "feast.infra.offline_stores.duckdb",
    "feast.infra.online_stores.sqlite",
    "feast.infra.online_stores.redis",
    "feast.infra.online_stores.postgres_online_store.postgres",
    # and, at materialize, its provider, file registry and compute engine
    "feast.infra.passthrough_provider",
    "feast.infra.registry.file",
    "feast.repo_operations",
    "feast.infra.compute_engines.dag.context",
    # Feast's materialization checks the online store against these two
    "feast.infra.online_stores.milvus_online_store",
    "feast.infra.online_stores.mysql_online_store",
    "mlflow",
    "mlflow.lightgbm",
    "great_expectations",
    "lightgbm",
    "onnxruntime",
    "bentoml",
    "ccxt",
    "talib",
    "candlecast.data.ingestion",
    "candlecast.data.importers",
    "candlecast.data.validation",
    "candlecast.data.resample",
    "candlecast.features.featurestore",
    "candlecast.modeling.training",
    "candlecast.modeling.promotion",
    "candlecast.modeling.onnx_export",
    "candlecast.serving.deploy",
    "candlecast.serving.forecaster",
    # what a candles run's scoring and announcement import (a tenth of a 5m run's own work
    # when each task imported them)
    "candlecast.monitoring.scoring",
    "candlecast.serving.notify",
    # what the DAG file builds its DAGs with: every task parses the DAG file, and importing
    # these was 0.04 of its 0.06 CPU-s (a tenth of a 5m candles run's own work)
    "candlecast.orchestration.dags",
    "candlecast.orchestration.monitor_dag",
)


def forks_tasks(argv: list[str]) -> bool:
    """Whether this process is one Airflow forks tasks from: the scheduler (its LocalExecutor
    workers) or a Celery worker."""
    command = [Path(argv[0]).name, *argv[1:3]] if argv else []
    return command[:2] == ["airflow", "scheduler"] or command[:3] == ["airflow", "celery", "worker"]


def preload(argv: list[str] | None = None) -> list[str]:
    """Import :data:`MODULES` (and every model kind and target) when this process forks
    tasks; returns what was imported. A module that fails to import is skipped: the task
    will raise it."""
    if os.environ.get("CANDLECAST_PRELOAD", "1") == "0" or not forks_tasks(argv or sys.argv):
        return []
    if all(name in sys.modules for name in MODULES):  # a forked task: inherited already
        return []
    started, done = time.perf_counter(), []
    from candlecast.features.online import import_feast

    import_feast()  # before any other import of Feast
    for name in MODULES:
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as exc:  # a broken optional import must not stop the scheduler
            log.warning("candlecast preload: %s not imported: %s", name, exc)
    from candlecast.modeling.kinds import get_kind, kind_names
    from candlecast.modeling.registry import import_skops
    from candlecast.targets import get_target, target_names

    for kind in kind_names():
        get_kind(kind)
    for target in target_names():
        get_target(target)
    # LightGBM's MLflow format: at import skops looks up ~1,100 types in every loaded module,
    # 3.5 CPU-s of each fit task's time in a process holding Airflow, Feast and MLflow
    import_skops()
    # the pair config, validated once: every task's DAG file parse reads it (a tenth of a
    # second with hundreds of streams); an edit is read again where it is next loaded
    from candlecast.config import load_pairs
    from candlecast.errors import ConfigError

    try:
        load_pairs()
    except ConfigError as exc:
        log.warning("candlecast preload: pair config not loaded: %s", exc)
    log.info("candlecast preload: %d modules in %.1f s", len(done), time.perf_counter() - started)
    return done
