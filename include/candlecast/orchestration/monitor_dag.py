"""The monitor DAG of a stream: check drift and realized skill, ask for a retrain when due.

``check`` runs :func:`candlecast.monitoring.check.check_pair` as of the run's data interval
end (figures into the metrics table, the Evidently report kept and logged to the champion's
run); ``request_retrain`` is skipped unless the check decided a retrain is due (a trigger
fired and no drift-triggered request was made within ``monitoring.retrain_cooldown_hours``),
so the retrain asset, which the stream's train DAG is scheduled on, gets an event only then,
its extra saying why: ``{"reason": ..., "stream": <key>}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from candlecast.config import PairConfig
from candlecast.errors import PermanentError
from candlecast.orchestration.dags import retrain_asset, run_interval, stream_dag

MONITOR_DOC = """\
### Monitoring of {label}

Scheduled `{schedule}`. Each run checks the stream as of its data interval end:

1. **check**: data drift (Evidently) of the champion's inputs, its training window against the
   last {window} candles; drift of its served forecasts against its holdout forecasts; realized
   skill of the logged forecasts against persistence. Figures go to the metrics table, the
   Evidently report to `$CANDLECAST_HOME/monitoring/reports/` and the champion's MLflow run.
2. **request_retrain**: only when drift share >= {share}, served forecasts drifted, or realized
   RMSE > {ratio}x persistence's, and no drift-triggered retrain in the last {cooldown} h of
   data time: emits `{asset}` with the reason, which schedules [`{train}`](/dags/{train}).
   Skipped otherwise (the check's log says why).
"""


def _checked(pair: PairConfig) -> dict[str, Any]:
    from candlecast.monitoring.check import check_pair

    try:
        result = check_pair(pair, run_interval(pair, pair.monitoring.schedule)[1])
    except PermanentError as exc:
        raise AirflowFailException(f"check: {type(exc).__name__}: {exc}") from exc
    return {
        "check_id": result.check_id,
        "as_of": result.as_of.isoformat(),
        "retrain": result.decision.retrain,
        "reason": result.decision.reason,
        "drift_share": result.drift.share,
        "drifted_features": result.drift.drifted,
        "report_path": result.report_path,
    }


def build_monitor_dag(pair: PairConfig) -> DAG:
    """check -> request_retrain (outlet: the stream's retrain asset, emitted only when due)."""
    stream = pair.stream
    monitoring = pair.monitoring
    doc = MONITOR_DOC.format(
        label=stream.label,
        schedule=monitoring.schedule,
        window=monitoring.window_candles,
        share=monitoring.drift_share,
        ratio=monitoring.max_rmse_ratio,
        cooldown=f"{monitoring.retrain_cooldown_hours:g}",
        asset=stream.retrain_asset_uri,
        train=stream.train_dag_id,
    )
    with stream_dag(
        pair,
        stream.monitor_dag_id,
        "monitor",
        "drift and realized skill; retrain requests",
        CronDataIntervalTimetable(monitoring.schedule, timezone="UTC"),
        doc,
    ) as dag:

        @task
        def check() -> dict[str, Any]:
            return _checked(pair)

        @task(outlets=[retrain_asset(stream)])
        def request_retrain(checked: dict[str, Any]) -> dict[str, Any]:
            from candlecast.monitoring.check import request_retrain as record_request

            if not checked["retrain"]:
                raise AirflowSkipException(f"no retrain: {checked['reason']}")
            record_request(
                pair,
                checked["reason"],
                check_id=checked["check_id"],
                now=datetime.fromisoformat(checked["as_of"]),
            )
            event = get_current_context()["outlet_events"][retrain_asset(stream)]
            event.extra = {"reason": checked["reason"], "stream": stream.key}
            return {"requested": True, "reason": checked["reason"]}

        checked: Any = check()
        request_retrain(checked)
    return dag
