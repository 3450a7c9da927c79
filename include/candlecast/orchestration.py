"""The Airflow DAG factory: one pipeline DAG per configured pair.

The only module of the package that imports Airflow. Tasks are a few lines each: they call
:mod:`candlecast.pipeline` for the run's data interval and pass on small dicts (row counts,
MLflow run ids, model versions, paths), never data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from candlecast import pipeline
from candlecast.config import PairConfig
from candlecast.errors import PermanentError

DEFAULT_ARGS = {
    "owner": "candlecast",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
}


def dag_id(pair: PairConfig) -> str:
    return f"pipeline_{pair.key}"


def features_asset(pair: PairConfig) -> Asset:
    return Asset(f"candlecast://features/{pair.key}/{pair.timeframe}", group="features")


def model_asset(pair: PairConfig) -> Asset:
    return Asset(f"candlecast://models/{pair.key}/champion", group="models")


def _interval() -> tuple[datetime, datetime]:
    context = get_current_context()
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None or end <= start:
        raise AirflowFailException(f"run has an empty data interval ({start} to {end})")
    return start, end


def _stage(name: str, *args: Any) -> dict[str, Any]:
    """Run a pipeline stage; failures that retrying cannot fix fail the task at once."""
    try:
        return getattr(pipeline, name)(*args)
    except PermanentError as exc:
        raise AirflowFailException(f"{name}: {exc}") from exc


def build_pipeline_dag(pair: PairConfig) -> DAG:
    """ingest -> validate -> features -> materialize -> train -> promote -> export_onnx -> deploy,
    each on the run's data interval."""
    with DAG(
        dag_id=dag_id(pair),
        description=f"{pair.symbol} ({pair.exchange}, {pair.timeframe}): candles to forecast",
        # Interval timetable: each run owns [data_interval_start, data_interval_end) of candles.
        schedule=CronDataIntervalTimetable(pair.schedule, timezone="UTC"),
        start_date=pair.start,
        end_date=pair.end,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["candlecast", f"pair:{pair.key}", f"exchange:{pair.exchange}", pair.timeframe],
        doc_md=__doc__,
    ) as dag:

        @task
        def ingest() -> dict[str, Any]:
            return _stage("ingest", pair, *_interval())

        @task
        def validate(batch: dict[str, Any]) -> dict[str, Any]:
            # ingestion may have caught up from before the interval, or refilled old gaps
            start = min(datetime.fromisoformat(batch["start"]), _interval()[0])
            return _stage("validate", pair, start, _interval()[1], batch["refetched"])

        @task
        def features(report: dict[str, Any]) -> dict[str, Any]:
            return _stage("features", pair, *_interval())

        @task(outlets=[features_asset(pair)])
        def materialize(written: dict[str, Any]) -> dict[str, Any]:
            return _stage("materialize", pair, *_interval())

        @task
        def train(online: dict[str, Any]) -> dict[str, Any]:
            return _stage("train", pair, _interval()[1])

        @task
        def promote(run: dict[str, Any]) -> dict[str, Any]:
            return _stage("promote", pair, run["run_id"], run["model_uri"])

        @task
        def export_onnx(decision: dict[str, Any]) -> dict[str, Any]:
            return _stage("export", pair)

        @task(outlets=[model_asset(pair)])
        def deploy(exported: dict[str, Any]) -> dict[str, Any]:
            return _stage("deploy", pair, exported)

        online = materialize(features(validate(ingest())))
        deploy(export_onnx(promote(train(online))))
    return dag
