"""Manual runs without a logical date (the UI's Trigger button, the REST API with
``logical_date: null``): real ``dag.test(logical_date=None)`` runs of each of a stream's
DAGs (a stream of their own: see conftest). The candles and monitor DAGs work on the latest
complete interval of their schedule (capped at the stream's ``end``); the train DAG on the
newest stored candle."""

from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.dags.conftest import OWN_END
from tests.helpers import CANDLES_TASKS, btc_pair

pytestmark = pytest.mark.slow

STREAM_END = OWN_END


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def features_events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        return [e.extra for e in session.scalars(query.where(AssetModel.uri == uri))]


def test_a_manual_candles_run_works_on_the_latest_complete_interval(in_own_stream):
    pair, dagbag, _ = in_own_stream
    run = dagbag.get_dag(pair.stream.candles_dag_id).test(logical_date=None)
    assert run.logical_date is None and run.run_type == "manual"
    assert states(run) == dict.fromkeys(CANDLES_TASKS, "success")
    latest = features_events(pair.stream.features_asset_uri)[-1]
    assert (latest["start"], latest["end"]) == (
        "2022-02-28T00:00:00+00:00",
        STREAM_END.isoformat(),
    )


def test_a_manual_monitor_run_checks_as_of_the_latest_complete_interval(in_own_stream):
    from candlecast.monitoring.store import MetricsStore

    pair, dagbag, _ = in_own_stream
    run = dagbag.get_dag(pair.stream.monitor_dag_id).test(logical_date=None)
    assert run.logical_date is None
    assert states(run)["check"] == "success"
    assert states(run)["request_retrain"] in ("success", "skipped")
    latest = MetricsStore().checks(pair.stream.key)[-1]
    assert latest.as_of == int(STREAM_END.timestamp() * 1000)


def test_a_manual_train_run_trains_up_to_the_newest_candle(in_own_stream):
    pair, dagbag, _ = in_own_stream
    run = dagbag.get_dag(pair.stream.train_dag_id).test(
        logical_date=None, run_conf={"kinds": ["lightgbm"], "dry_run": True}
    )
    assert run.logical_date is None
    assert states(run)["promote"] == "success"
    assert {states(run)[t] for t in ("export_onnx", "deploy", "train_targets")} == {"skipped"}
    # the dry run's MLflow runs say so in their names
    import mlflow

    from candlecast.modeling import registry

    registry.configure()
    runs = mlflow.search_runs(experiment_names=[pair.stream.experiment], order_by=["start_time"])
    parent = runs[runs["tags.run.role"] == "training"]["run_id"].iloc[-1]
    family = runs[(runs["run_id"] == parent) | (runs["tags.mlflow.parentRunId"] == parent)]
    names = list(family["tags.mlflow.runName"])
    assert len(names) == 2 and all(name.endswith(" (dry run)") for name in names), names


def test_the_latest_interval_is_of_the_schedule_and_capped_at_the_stream_end():
    from candlecast.orchestration.dags import latest_interval

    pair = btc_pair()
    now = datetime(2026, 12, 6, 17, 30, tzinfo=UTC)
    assert latest_interval(pair, "@daily", now) == (datetime(2022, 2, 28, tzinfo=UTC), STREAM_END)
    live = btc_pair(end=None)
    assert latest_interval(live, "0 * * * *", now) == (
        datetime(2026, 12, 6, 16, tzinfo=UTC),
        datetime(2026, 12, 6, 17, tzinfo=UTC),
    )


def test_no_interval_before_the_stream_start_fails_saying_what_to_pass():
    from candlecast.orchestration.dags import latest_interval

    pair = btc_pair(start=datetime(2022, 2, 28, 12, tzinfo=UTC))
    with pytest.raises(AirflowFailException, match="trigger the run with a logical date"):
        latest_interval(pair, "@daily", datetime(2026, 1, 1, tzinfo=UTC))


def test_a_manual_train_run_before_any_candles_fails_once_saying_what_to_do(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from candlecast.orchestration.dags import _training_end

    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path))
    context = {"params": {}, "dag_run": SimpleNamespace(run_type="manual")}
    with pytest.raises(AirflowFailException, match="run the candles DAG first"):
        _training_end(btc_pair(), context)
