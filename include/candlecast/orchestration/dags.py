"""The Airflow DAG factory: per configured stream, a candles DAG, a train DAG and (from
:mod:`candlecast.orchestration.monitor_dag`) a monitor DAG.

The only module of the package that imports Airflow. Tasks are a few lines each: they call
:mod:`candlecast.orchestration.stages` and pass on small dicts (row counts, MLflow run ids,
model versions, paths), never data. The DAGs talk through assets, not sensors: the candles
DAG emits ``features`` events (their extra says which interval was materialized); the train
DAG is scheduled on its cadence, on those events and on monitoring's ``retrain`` requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    Param,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from candlecast.config import PairConfig
from candlecast.errors import PermanentError
from candlecast.modeling.kinds import check_training, get_kind, kind_names
from candlecast.names import TRAINING_POOL, Stream
from candlecast.orchestration import stages
from candlecast.timeframes import ms_to_datetime, timeframe_delta

R = TypeVar("R")
log = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "candlecast",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=1),
}
#: Exchange calls fail in ways a retry fixes (rate limits, timeouts): more, slower retries.
FETCH_ARGS: dict[str, Any] = {"retries": 4, "retry_delay": timedelta(minutes=2)}
#: Fitting one kind on a few months of candles; a hung fit is failed, not waited on forever.
FIT_TIMEOUT = timedelta(hours=2)

CANDLES_DOC = """\
### Candles of {label}

Each run owns the candles of its data interval `[data_interval_start, data_interval_end)`:

1. **ingest**: fetch them from {exchange} with ccxt (on an empty store, also the history the
   features and the training window need) into the raw store; pool `{pool}` bounds the calls.
2. **validate**: Great Expectations suite on the batch; a bad batch is quarantined with its
   report (`quarantine/`), and nothing bad reaches the features.
3. **features**: technical indicators (and the higher timeframes') from validated candles only;
   waits for the previous interval's features (`depends_on_past`) so warm-up is never cut.
4. **materialize**: into the Feast online store; emits the asset `{asset}`, which schedules
   [`{train}`](/dags/{train}); then the platform forecasts each of the interval's candles with
   the model in force for it and logs the forecasts, so realized skill never waits for a
   client (`candlecast monitor`).

Backfills (`airflow backfill create --dag-id {dag} --from-date ... --to-date ...`) fetch and
materialize exactly each run's interval, in order. Outputs live under `CANDLECAST_HOME`.
"""

CANDLES_ONE_TASK_DOC = """\
### Candles of {label}

Each run owns the candle(s) of its data interval `[data_interval_start, data_interval_end)`
and runs, in one task process (**ingest_and_materialize**; a {timeframe} stream's run is too
small to pay four):

1. **ingest** from {exchange} with ccxt (pool `{pool}` bounds the calls);
2. **validate** with the Great Expectations suite; a bad batch is quarantined with its report
   and data docs (`quarantine/`); a healthy candle builds no data docs;
3. **features** from validated candles only; the task waits for the previous interval's run
   (`depends_on_past`) so warm-up is never cut;
4. **materialize** into the Feast online store; emits the asset `{asset}`, which schedules
   [`{train}`](/dags/{train});
5. **score**: the platform forecasts each of the interval's candles with the model in force
   for it and logs the forecasts (realized skill never waits for a client).

The task log shows each step. Backfills (`airflow backfill create --dag-id {dag} ...`) fetch
and materialize exactly each run's interval, in order. Outputs live under `CANDLECAST_HOME`.
"""

#: Streams whose candles close more often than this run a candles run as one task.
ONE_TASK_BELOW = timedelta(hours=1)

TRAIN_DOC = """\
### Models of {label}

Scheduled `{cadence}`, and by the assets {assets}.

1. **training_set**: point-in-time features from Feast over the training window, saved, and
   the parent MLflow run in experiment `{experiment}` (re-running the same interval on the
   same data reuses it).
2. **fit** (one mapped task per model kind, named after it in the grid, pool `{pool}`): a
   child run per kind.
3. **evaluate**: the best kind on the chronological holdout becomes the challenger.
4. **promote**: the gate against the champion and persistence, recorded on the MLflow run and
   in this DAG run's note (the grid shows it). A run for
   an older interval (a backfill) evaluates and records but never replaces a champion
   trained on newer data.
5. **export_onnx**: the winner to ONNX, with its parity check.
6. **deploy**: to the BentoML service, smoke-tested; only then does the registered model
   `{model}` move its `champion` alias (a failure anywhere leaves the previous champion
   champion and served). The decision is recorded with the data time it holds from, and the
   platform forecasts the candles it is in force for. Emits `{model_asset}`.
7. **train_targets**: every other configured target and horizon (`training.targets`: returns
   further ahead, volatility) on the same window: its baselines and the kinds that can fit it
   on an embargoed holdout, the best baseline served unless a learned kind beats it
   significantly, exported with parity and registered as `<stream>_<target>_h<H>`.
8. **catch_up**: when features newer than this run's window were materialized meanwhile, one
   event on the retrain asset starts the run that trains up to them (a guard against
   apache/airflow#56050, which can leave a queued features event without a run); skipped
   otherwise.

Trigger with params to train other kinds, another window, or as a dry run (train and evaluate,
never promote).
"""


LINKS_DOC = """
**Links**: [MLflow experiment](/candlecast/dags/{dag}/go/experiment) ·
[registered model](/candlecast/dags/{dag}/go/model) ·
[prediction service](/candlecast/dags/{dag}/go/service) ·
[Grafana dashboard](/candlecast/dags/{dag}/go/dashboard) (also in the *Pair links* tab and on
each task instance's extra links).
"""


def features_asset(stream: Stream) -> Asset:
    return Asset(name=f"features_{stream.key}", uri=stream.features_asset_uri, group="features")


def retrain_asset(stream: Stream) -> Asset:
    return Asset(name=f"retrain_{stream.key}", uri=stream.retrain_asset_uri, group="retrain")


def model_asset(stream: Stream) -> Asset:
    return Asset(name=f"champion_{stream.key}", uri=stream.model_asset_uri, group="models")


def _run(stage: Callable[..., R], *args: Any) -> dict[str, Any]:
    """Run a stage and hand its result to XCom; failures that retrying cannot fix fail the
    task at once instead of spending its retries."""
    try:
        return stages.to_xcom(stage(*args))
    except PermanentError as exc:
        raise AirflowFailException(f"{stage.__name__}: {type(exc).__name__}: {exc}") from exc


def latest_interval(pair: PairConfig, cron: str, run_after: datetime) -> tuple[datetime, datetime]:
    """The newest complete interval of ``cron`` that ends by ``run_after`` (or by the stream's
    ``end``, when that comes first): what a manual run without a logical date works on.

    Raises:
        AirflowFailException: no such interval after the stream's ``start`` (failed at once,
            not retried, saying what to pass instead).
    """
    from airflow.sdk import timezone
    from airflow.timetables.interval import CronDataIntervalTimetable as CoreCron

    moment = min(run_after, pair.end) if pair.end else run_after
    found = CoreCron(cron, "UTC").infer_manual_data_interval(
        run_after=timezone.coerce_datetime(moment)
    )
    start, end = found.start, found.end
    if pair.start is not None and start < pair.start:
        raise AirflowFailException(
            f"{pair.stream.label}: no complete {cron} interval between the stream's start "
            f"({pair.start.isoformat()}) and {moment.isoformat()}; trigger the run with a "
            "logical date inside the stream's configured start..end"
        )
    return start, end


def run_interval(pair: PairConfig, cron: str) -> tuple[datetime, datetime]:
    """The run's data interval; a manual run without a logical date (the UI's Trigger button,
    the REST API with ``logical_date: null``) has none and gets :func:`latest_interval`."""
    context = get_current_context()
    start: datetime | None = context.get("data_interval_start")
    end: datetime | None = context.get("data_interval_end")
    if start is None and end is None:
        start, end = latest_interval(pair, cron, context["dag_run"].run_after)
        log.info(
            "manual run without a logical date: the latest complete interval %s to %s", start, end
        )
    if start is None or end is None or end <= start:
        raise AirflowFailException(
            f"run has an empty data interval ({start} to {end}); trigger it with a logical date"
        )
    return start, end


def _candles_interval(pair: PairConfig) -> tuple[datetime, datetime]:
    return run_interval(pair, pair.candles_schedule)


def build_dags(pair: PairConfig, only: str | None = None) -> dict[str, DAG]:
    """The stream's DAGs by id (just ``only`` when a task run parses its own DAG)."""
    from candlecast.orchestration.monitor_dag import build_monitor_dag  # it imports this module

    builders = {
        pair.stream.candles_dag_id: build_candles_dag,
        pair.stream.train_dag_id: build_train_dag,
        pair.stream.monitor_dag_id: build_monitor_dag,
    }
    return {dag_id: build(pair) for dag_id, build in builders.items() if only in (None, dag_id)}


def stream_dag(
    pair: PairConfig,
    dag_id: str,
    what: str,
    description: str,
    schedule: Any,
    doc: str,
    **extra: Any,
) -> DAG:
    """A DAG of one stream with the conventions every candlecast DAG shares: its data from
    ``start`` to ``end``, no catch-up, one run at a time, the default retries, tags."""
    return DAG(
        dag_id=dag_id,
        description=f"{pair.stream.label}: {description}",
        schedule=schedule,
        start_date=pair.start,
        end_date=pair.end,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["candlecast", what, *pair.stream.tags],
        doc_md=doc,
        **extra,
    )


def one_task_candles(pair: PairConfig) -> bool:
    """Whether the stream's candles DAG runs as one task: sub-hourly streams, whose runs are
    so small that four task processes each (start-up, DAG parse, XCom, Execution API calls)
    cost more CPU than the work (bench/bench_streams.py)."""
    return timeframe_delta(pair.timeframe) < ONE_TASK_BELOW


def build_candles_dag(pair: PairConfig) -> DAG:
    """ingest -> validate -> features -> materialize, each on the run's data interval; one
    task doing all four for sub-hourly streams (:func:`one_task_candles`)."""
    stream = pair.stream
    doc = (CANDLES_ONE_TASK_DOC if one_task_candles(pair) else CANDLES_DOC).format(
        label=stream.label,
        exchange=stream.exchange,
        pool=stream.exchange_pool,
        asset=stream.features_asset_uri,
        train=stream.train_dag_id,
        dag=stream.candles_dag_id,
        timeframe=stream.timeframe,
    ) + LINKS_DOC.format(dag=stream.candles_dag_id)
    with stream_dag(
        pair,
        stream.candles_dag_id,
        "candles",
        "candles to validated, materialized features",
        CronDataIntervalTimetable(pair.candles_schedule, timezone="UTC"),
        doc,
    ) as dag:
        if one_task_candles(pair):
            _candles_task(pair)
        else:
            _candles_tasks(pair)
    return dag


def _emit_features(stream: Stream, start: datetime, end: datetime) -> None:
    event = get_current_context()["outlet_events"][features_asset(stream)]
    event.extra = {"stream": stream.key, "start": start.isoformat(), "end": end.isoformat()}


def _candles_task(pair: PairConfig) -> None:
    stream = pair.stream

    # one XCom (a dict return is pushed key by key otherwise: one Execution API call each)
    @task(
        pool=stream.exchange_pool,
        depends_on_past=True,
        outlets=[features_asset(stream)],
        multiple_outputs=False,
        **FETCH_ARGS,
    )
    def ingest_and_materialize() -> dict[str, Any]:
        start, end = _candles_interval(pair)
        result = _run(stages.candles_run, pair, start, end)
        _emit_features(stream, start, end)
        return result

    ingest_and_materialize()


def _candles_tasks(pair: PairConfig) -> None:
    stream = pair.stream

    @task(pool=stream.exchange_pool, **FETCH_ARGS)
    def ingest() -> dict[str, Any]:
        return _run(stages.ingest, pair, *_candles_interval(pair))

    def _fetched_from(batch: dict[str, Any]) -> datetime:
        # ingestion may have caught up from before the interval, or (fresh store) fetched
        # the warm-up and training history
        return min(ms_to_datetime(batch["start_ms"]), _candles_interval(pair)[0])

    @task
    def validate(batch: dict[str, Any]) -> dict[str, Any]:
        first = _fetched_from(batch)
        return _run(stages.validate, pair, first, _candles_interval(pair)[1], batch["refetched"])

    @task(depends_on_past=True)
    def features(batch: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
        return _run(stages.features, pair, _fetched_from(batch), _candles_interval(pair)[1])

    @task(outlets=[features_asset(stream)])
    def materialize(written: dict[str, Any]) -> dict[str, Any]:
        start, end = _candles_interval(pair)
        result = _run(stages.materialize, pair, start, end)
        _emit_features(stream, start, end)
        scored = stages.score(pair, start, end)  # the platform forecasts every candle
        return result | {"scored": stages.to_xcom(scored) if scored else None}

    batch: Any = ingest()
    report: Any = validate(batch)
    written: Any = features(batch, report)
    materialize(written)


def _train_schedule(pair: PairConfig) -> Any:
    stream = pair.stream
    assets: Any = retrain_asset(stream)
    if pair.training.on_new_features:
        assets = features_asset(stream) | assets
    if pair.training.schedule is None:
        return assets
    cadence = CronDataIntervalTimetable(pair.training.schedule, timezone="UTC")
    return AssetOrTimeSchedule(timetable=cadence, assets=assets)


#: Param schemas name their draft: Airflow validates every default when it builds a DAG, and
#: checking a schema against draft 2020-12 (jsonschema's default) costs 2.5x draft 7's, per
#: param and DAG (bench/bench_dags.py).
SCHEMA_DRAFT = {"$schema": "http://json-schema.org/draft-07/schema#"}


def _params(pair: PairConfig) -> dict[str, Param]:
    params = {
        "kinds": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": [k for k in kind_names() if get_kind(k).trainable]},
            minItems=1,
            uniqueItems=True,
            title="Model kinds",
            description=f"Kinds to train (default: the config's {pair.training.kinds}).",
        ),
        "train_days": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=3650,
            title="Training window (days)",
            description=f"Default: the config's {pair.training.train_days:g}.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="End of the training window",
            description="Default: the run's interval end, the triggering features' end, "
            "or the newest stored candle.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Train and evaluate, record the gate's decision, never promote.",
        ),
    }
    for param in params.values():
        param.schema.update(SCHEMA_DRAFT)
    return params


def _training_end(pair: PairConfig, context: Any) -> datetime:
    """Where the training window ends for this run, first of: the ``end`` param, the newest
    interval end of the triggering features events, the run's data interval end (a scheduled
    or backfilled run), the close of the newest stored candle (a retrain request)."""
    if context["params"].get("end"):
        return stages.parse_time(context["params"]["end"])
    ends = [
        stages.parse_time(event.extra["end"])
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if (event.extra or {}).get("end")
    ]
    if ends:
        return max(ends)
    run = context["dag_run"]
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if run.run_type != "manual" and start is not None and end is not None and end > start:
        return end
    try:
        return stages.newest_candle_close(pair)
    except PermanentError as exc:  # a manual run before any candles: failed once, not retried
        raise AirflowFailException(
            f"{exc}; run the candles DAG first, or trigger with the `end` param"
        ) from exc


def _trigger_reason(context: Any) -> str:
    """Why this train run happens: the reasons in its triggering asset events (a retrain
    request says why), else how the run was created."""
    reasons = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            extra = event.extra or {}
            reasons.append(str(extra.get("reason") or f"new features up to {extra.get('end')}"))
    if reasons:
        return "; ".join(dict.fromkeys(reasons))
    run_type = context["dag_run"].run_type
    return f"{getattr(run_type, 'value', run_type)} run"


def _skip_dry_run(what: str) -> None:
    """Skip the running task in a dry run (``dry_run`` param)."""
    if get_current_context()["params"].get("dry_run"):
        raise AirflowSkipException(f"dry run: {what}")


def _train_doc(pair: PairConfig) -> str:
    stream = pair.stream
    assets = [stream.retrain_asset_uri]
    if pair.training.on_new_features:
        assets.insert(0, stream.features_asset_uri)
    return TRAIN_DOC.format(
        label=stream.label,
        cadence=pair.training.schedule or "never by time",
        assets=", ".join(f"`{a}`" for a in assets),
        experiment=stream.experiment,
        pool=TRAINING_POOL,
        model=stream.registered_model,
        model_asset=stream.model_asset_uri,
    ) + LINKS_DOC.format(dag=stream.train_dag_id)


def _catch_up(pair: PairConfig, end: datetime) -> dict[str, Any]:
    """Airflow 3.2 can leave a features event queued behind a run of a DAG at
    ``max_active_runs=1`` and never start its run (apache/airflow#56050). When features newer
    than this run's window were materialized, one event on the DAG's own retrain asset starts
    the run that trains up to the newest candle; otherwise the task is skipped (no event)."""
    newer = stages.untrained_features(pair, end) if pair.training.on_new_features else None
    if newer is None:
        raise AirflowSkipException(f"no features newer than {end.isoformat()}")
    reason = (
        f"features up to {newer.isoformat()} were materialized while this run trained up to "
        f"{end.isoformat()}; training up to the newest candle"
    )
    event = get_current_context()["outlet_events"][retrain_asset(pair.stream)]
    event.extra = {"stream": pair.stream.key, "reason": reason}
    return {"newest_features": newer.isoformat(), "trained_to": end.isoformat()}


def build_train_dag(pair: PairConfig) -> DAG:
    """training_set -> fit[kind...] -> evaluate -> promote -> export_onnx -> deploy ->
    train_targets (every other configured target and horizon, on the same window) -> catch_up
    (a guard against a stranded features event).

    Raises:
        ConfigError: the pair's training section names an unknown kind or bad parameters
            (so a typo is a DAG import error naming the key).
    """
    stream = pair.stream
    check_training(pair.training, stream.label)
    with stream_dag(
        pair,
        stream.train_dag_id,
        "train",
        "train, gate, export and deploy the forecaster",
        _train_schedule(pair),
        _train_doc(pair),
        params=_params(pair),
    ) as dag:

        def _pair() -> PairConfig:
            params = get_current_context()["params"]
            return stages.with_training(pair, params.get("kinds"), params.get("train_days"))

        @task(pool=TRAINING_POOL)
        def training_set() -> dict[str, Any]:
            context = get_current_context()
            end = _training_end(pair, context)
            dry_run = bool(context["params"].get("dry_run"))
            reason = _trigger_reason(context)
            return _run(stages.prepare_training, _pair(), end, reason, dry_run)

        @task
        def kinds(prepared: dict[str, Any]) -> list[str]:
            return list(prepared["kinds"])

        # the grid names each mapped fit by its kind, not by map index 0, 1, ...
        @task(
            pool=TRAINING_POOL, execution_timeout=FIT_TIMEOUT, map_index_template="{{ kind_name }}"
        )
        def fit(prepared: dict[str, Any], kind: str) -> dict[str, Any]:
            from candlecast.modeling.training import Prepared

            get_current_context()["kind_name"] = kind  # type: ignore[typeddict-unknown-key]
            return _run(stages.fit_kind, _pair(), Prepared(**prepared), kind)

        @task
        def evaluate(prepared: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
            from candlecast.modeling.training import KindRun, Prepared

            # by index up to the count: iterating a mapped task's XComs asks for one past the
            # last, which the API server answers (and logs) as "XCom not found"
            fitted = [KindRun(**runs[index]) for index in range(len(runs))]
            return _run(stages.select_challenger, _pair(), Prepared(**prepared), fitted)

        @task
        def promote(trained: dict[str, Any]) -> dict[str, Any]:
            challenger = trained["challenger"]
            dry_run = bool(get_current_context()["params"].get("dry_run"))
            return _run(
                stages.promote, _pair(), challenger["run_id"], challenger["model_uri"], dry_run
            )

        @task
        def export_onnx(decision: dict[str, Any]) -> dict[str, Any]:
            from candlecast.modeling.promotion import Decision

            if decision["dry_run"]:
                raise AirflowSkipException("dry run: nothing is exported or deployed")
            return _run(stages.export, _pair(), Decision(**decision))

        @task(outlets=[model_asset(stream)])
        def deploy(exported: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
            from candlecast.modeling.onnx_export import ExportedModel
            from candlecast.modeling.promotion import Decision

            model = ExportedModel.model_validate(exported)
            return _run(stages.deploy, _pair(), model, Decision(**decision))

        @task(pool=TRAINING_POOL, execution_timeout=FIT_TIMEOUT)
        def train_targets(prepared: dict[str, Any]) -> list[dict[str, Any]]:
            _skip_dry_run("no target champion is registered")
            end = stages.parse_time(prepared["end"])
            return [stages.to_xcom(found) for found in stages.train_targets(_pair(), end)]

        @task(outlets=[retrain_asset(stream)])
        def catch_up(prepared: dict[str, Any]) -> dict[str, Any]:
            return _catch_up(pair, stages.parse_time(prepared["end"]))

        # Task calls return XComArgs at parse time; they resolve to the dicts at run time.
        prepared: Any = training_set()
        runs: Any = fit.partial(prepared=prepared).expand(kind=kinds(prepared))
        trained: Any = evaluate(prepared, runs)
        decision: Any = promote(trained)
        exported: Any = export_onnx(decision)
        deploy(exported, decision) >> train_targets(prepared) >> catch_up(prepared)
    return dag
