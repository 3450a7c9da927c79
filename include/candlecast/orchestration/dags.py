"""The Airflow DAG factory: one pipeline DAG per configured stream.

The only module of the package that imports Airflow. Tasks are a few lines each: they call
:mod:`candlecast.orchestration.stages` for the run's data interval and pass on small dicts
(row counts, MLflow run ids, model versions, paths), never data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from candlecast.config import PairConfig
from candlecast.errors import PermanentError
from candlecast.modeling.kinds import check_training
from candlecast.names import Stream
from candlecast.orchestration import stages
from candlecast.timeframes import ms_to_datetime

DEFAULT_ARGS = {
    "owner": "candlecast",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
}
R = TypeVar("R")


def dag_id(pair: PairConfig) -> str:
    return pair.stream.dag_id


def features_asset(stream: Stream) -> Asset:
    return Asset(stream.features_asset_uri, group="features")


def model_asset(stream: Stream) -> Asset:
    return Asset(stream.model_asset_uri, group="models")


def _interval() -> tuple[datetime, datetime]:
    context = get_current_context()
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None or end <= start:
        raise AirflowFailException(f"run has an empty data interval ({start} to {end})")
    return start, end


def _run(stage: Callable[..., R], *args: Any) -> dict[str, Any]:
    """Run a stage and hand its result to XCom; failures that retrying cannot fix fail the
    task at once instead of spending its retries."""
    try:
        return stages.to_xcom(stage(*args))
    except PermanentError as exc:
        raise AirflowFailException(f"{stage.__name__}: {type(exc).__name__}: {exc}") from exc


def build_pipeline_dag(pair: PairConfig) -> DAG:
    """ingest -> validate -> features -> materialize -> train -> promote -> export_onnx -> deploy,
    each on the run's data interval.

    Raises:
        ConfigError: the pair's training section names an unknown kind or bad parameters
            (so a typo is a DAG import error naming the key).
    """
    stream = pair.stream
    check_training(pair.training, stream.label)
    with DAG(
        dag_id=stream.dag_id,
        description=f"{stream.label}: candles to a served forecast",
        # Interval timetable: each run owns [data_interval_start, data_interval_end) of candles.
        schedule=CronDataIntervalTimetable(pair.schedule, timezone="UTC"),
        start_date=pair.start,
        end_date=pair.end,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["candlecast", *stream.tags],
        doc_md=__doc__,
    ) as dag:

        @task
        def ingest() -> dict[str, Any]:
            return _run(stages.ingest, pair, *_interval())

        def _fetched_from(batch: dict[str, Any]) -> datetime:
            # ingestion may have caught up from before the interval, or (fresh store) fetched
            # the warm-up and training history
            return min(ms_to_datetime(batch["start_ms"]), _interval()[0])

        @task
        def validate(batch: dict[str, Any]) -> dict[str, Any]:
            first = _fetched_from(batch)
            return _run(stages.validate, pair, first, _interval()[1], batch["refetched"])

        @task
        def features(batch: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
            return _run(stages.features, pair, _fetched_from(batch), _interval()[1])

        @task(outlets=[features_asset(stream)])
        def materialize(written: dict[str, Any]) -> dict[str, Any]:
            return _run(stages.materialize, pair, *_interval())

        @task
        def train(online: dict[str, Any]) -> dict[str, Any]:
            return _run(stages.train, pair, _interval()[1])

        @task
        def promote(trained: dict[str, Any]) -> dict[str, Any]:
            challenger = trained["challenger"]
            return _run(stages.promote, pair, challenger["run_id"], challenger["model_uri"])

        @task
        def export_onnx(decision: dict[str, Any]) -> dict[str, Any]:
            return _run(stages.export, pair)

        @task(outlets=[model_asset(stream)])
        def deploy(exported: dict[str, Any]) -> dict[str, Any]:
            from candlecast.modeling.onnx_export import ExportedModel

            return _run(stages.deploy, pair, ExportedModel(**exported))

        # Task calls return XComArgs at parse time; they resolve to the dicts at run time.
        batch: Any = ingest()
        report: Any = validate(batch)
        written: Any = features(batch, report)
        online: Any = materialize(written)
        trained: Any = train(online)
        decision: Any = promote(trained)
        exported: Any = export_onnx(decision)
        deploy(exported)
    return dag
