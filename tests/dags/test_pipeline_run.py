"""Real dag.test() runs of the default pair's candles DAG and then its train DAG, and of a
sub-hourly stream's one-task candles DAG."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from candlecast.features import featurestore
from candlecast.modeling import registry as tracking
from candlecast.modeling.onnx_export import ExportedModel
from candlecast.serving.forecaster import Forecaster
from candlecast.timeframes import to_ms
from tests.helpers import CANDLES_ONE_TASK, CANDLES_TASKS, TRAIN_TASKS

pytestmark = pytest.mark.slow


def test_runs_succeed_for_their_data_interval(pipeline_run):
    pair, candles, train = pipeline_run
    assert candles.state == "success" and train.state == "success"
    assert (candles.data_interval_start.isoformat(), candles.data_interval_end.isoformat()) == (
        "2022-02-28T00:00:00+00:00",
        "2022-03-01T00:00:00+00:00",
    )
    states = {ti.task_id: ti.state for ti in candles.get_task_instances()}
    assert states == dict.fromkeys(CANDLES_TASKS, "success")
    fitted = [ti for ti in train.get_task_instances() if ti.task_id == "fit"]
    assert sorted(ti.map_index for ti in fitted) == list(range(len(pair.training.kinds)))
    assert {ti.task_id for ti in train.get_task_instances()} == set(TRAIN_TASKS)
    states = {ti.task_id: ti.state for ti in train.get_task_instances()}
    # it trained up to the newest materialized candle: no stranded features to catch up with
    assert states.pop("catch_up") == "skipped"
    assert set(states.values()) == {"success"}


def test_mapped_fits_are_named_by_their_kind(pipeline_run):
    pair, _, train = pipeline_run
    fitted = [ti for ti in train.get_task_instances() if ti.task_id == "fit"]
    assert sorted(ti.rendered_map_index for ti in fitted) == sorted(pair.training.kinds)


def test_the_train_runs_note_says_what_the_gate_decided(pipeline_run):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    pair, _, train = pipeline_run
    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == train.dag_id, DagRun.run_id == train.run_id)
        note = session.scalar(query).note
    champion = MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "champion")
    assert note.startswith(("promoted", "kept champion", "persistence is champion"))
    assert f"v{champion.version}" in note


def test_each_kind_is_its_own_child_run_of_one_training_run(pipeline_run):
    pair, _, _ = pipeline_run
    tracking.configure()
    client = MlflowClient()
    experiment = client.get_experiment_by_name(pair.stream.experiment)
    # the MLflow UI opens it as model training, not as a GenAI app
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = client.search_runs(
        [experiment.experiment_id], "tags.`run.role` = 'training'", max_results=5
    )
    assert len(parents) == 1
    found = client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'",
    )
    children = [run for run in found if run.data.tags["run.role"] == "kind"]
    assert sorted(run.data.tags["kind"] for run in children) == sorted(pair.training.kinds)
    # beside them at most persistence's own run, when the gate serves it (its "Source Run")
    others = [run.data.tags["kind"] for run in found if run.data.tags["run.role"] != "kind"]
    assert others in ([], ["persistence"])
    assert parents[0].data.tags["challenger.kind"] in pair.training.kinds
    assert parents[0].data.tags["trigger.reason"] == "manual run"  # dag.test() runs are manual
    for run in children:  # skill as ratios to persistence (MLflow's tables round raw errors)
        metrics = run.data.metrics
        for name in ("rmse", "mae"):
            ratio = metrics[f"holdout_{name}"] / metrics[f"persistence_{name}"]
            assert metrics[f"holdout_{name}_ratio"] == pytest.approx(ratio)
        assert "persistence_directional_accuracy" not in metrics  # persistence calls none
    # the training run spans the training: it ends after every kind's run began (it used to
    # close before the first; the kinds' runs are reopened later by promotion, so their end
    # times move on)
    assert parents[0].info.end_time > max(run.info.start_time for run in children)


def test_run_registers_a_champion_with_its_decision(pipeline_run):
    pair, _, _ = pipeline_run
    tracking.configure()
    client = MlflowClient()
    champion = client.get_model_version_by_alias(pair.stream.registered_model, "champion")
    assert champion.tags["kind"] in ("lightgbm", "persistence")
    run = client.get_run(champion.run_id)
    assert run.data.tags["promotion.outcome"] in ("promoted", "persistence")
    assert run.data.metrics["holdout_rmse"] > 0 and run.data.metrics["persistence_rmse"] > 0
    assert len(run.data.tags["data.version"]) == 32  # content version of the training data
    assert int(run.data.tags["data.partitions"]) >= pair.training.train_days
    # the version's page says why it serves; the run shows its holdout forecasts
    assert champion.description.split(":")[0] in ("serves", "promoted", "persistence")
    assert run.data.tags["promotion.outcome"] in champion.description
    plots = [a.path for a in client.list_artifacts(champion.run_id, "plots")]
    assert "plots/holdout_forecast_vs_realized.png" in plots


def test_run_exports_onnx_and_materializes_the_interval(pipeline_run, home):
    pair, run, _ = pipeline_run
    champion = MlflowClient().get_model_version_by_alias(pair.stream.registered_model, "champion")
    folder = home / "models" / pair.key / f"v{champion.version}"
    exported = ExportedModel.load(folder)
    assert (folder / "model.onnx").stat().st_size > 0
    assert exported.parity_max_abs_diff <= 1e-5
    online = featurestore.online_features(
        featurestore.feature_store(), pair.stream, ["candle_ts", "close"]
    )
    last_candle = to_ms(run.data_interval_end) - 3_600_000
    assert online["candle_ts"] == last_candle
    forecast = Forecaster().predict(pair.symbol, pair.exchange, pair.timeframe)
    assert forecast["model"]["version"] == str(champion.version)
    assert forecast["feature_timestamp"] == run.data_interval_end.isoformat()


def test_rerunning_export_and_deploy_changes_nothing(pipeline_run, home):
    import bentoml

    from candlecast.orchestration import stages as pipeline
    from candlecast.serving import deploy

    pair, _, _ = pipeline_run
    before = sorted(str(m.tag) for m in bentoml.models.list())
    exported = pipeline.export(pair)
    assert deploy.deploy(pair, exported) == deploy.deploy(pair, exported)
    assert sorted(str(m.tag) for m in bentoml.models.list()) == before


def test_a_served_window_equals_the_training_window_for_the_same_candle(pipeline_run):
    """Sequence kinds read the last N feature rows: what serving assembles from the stores
    for the newest candle is exactly what training builds for that candle."""
    from candlecast.features.engineering import FEATURE_COLUMNS
    from candlecast.modeling import training
    from candlecast.modeling.kinds.base import window_inputs
    from candlecast.settings import get_settings
    from candlecast.timeframes import timeframe_ms

    pair, run, _ = pipeline_run
    step, window = timeframe_ms(pair.timeframe), 24
    frame = training.training_frame(pair, run.data_interval_end, get_settings())
    x, usable = window_inputs(frame, FEATURE_COLUMNS, window, step)
    last = len(frame) - 1
    assert usable[last]
    served = Forecaster()._window_row(
        pair, FEATURE_COLUMNS, window, int(frame["candle_ts"].iloc[last])
    )
    assert served.shape == (1, window * len(FEATURE_COLUMNS))
    assert (served[0] == x[last].astype("float32")).all()


def test_a_sub_hourly_candles_run_is_one_task_that_materializes_its_candle(dagbag, home):
    from candlecast.orchestration import stages as pipeline

    pair = pipeline.pair_config("ETH/BTC", "binance", "5m")
    end = datetime(2018, 1, 29, tzinfo=UTC)  # the shipped config runs it @daily
    pipeline.backfill(pair, end - timedelta(days=3), end - timedelta(days=1))
    docs = pair.stream.candle_dir(home / "data_docs")
    pages_before = sorted(docs.rglob("*.html"))
    run = dagbag.get_dag(pair.stream.candles_dag_id).test(logical_date=end)
    assert run.state == "success"
    assert (run.data_interval_start, run.data_interval_end) == (end - timedelta(days=1), end)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == dict.fromkeys(
        CANDLES_ONE_TASK, "success"
    )
    online = featurestore.online_features(featurestore.feature_store(), pair.stream, ["candle_ts"])
    assert online["candle_ts"] == to_ms(end) - 300_000
    assert sorted(docs.rglob("*.html")) == pages_before  # a healthy candle builds no data docs


def test_catch_up_sees_features_newer_than_a_runs_window(pipeline_run):
    """The guard against a stranded features event (apache/airflow#56050): a train run whose
    window ended before the newest materialized candle would ask for another run."""
    from datetime import UTC, datetime

    from candlecast.orchestration import stages

    pair, _, _ = pipeline_run
    newest = datetime(2022, 3, 1, tzinfo=UTC)  # the online row closes at the demo day's end
    assert stages.untrained_features(pair, datetime(2022, 2, 27, tzinfo=UTC)) == newest
    assert stages.untrained_features(pair, newest) is None


def test_the_mlflow_compare_page_shows_each_kinds_ratio_to_persistence(pipeline_run, tmp_path):
    """The MLflow UI's compare page of the training's kinds, in headless Chromium: the ratio
    columns are there (MLflow rounds raw errors to 0.008 for every kind); a screenshot is kept
    as a test artifact (DOM assertions, the PNG is for people)."""
    import json
    import os
    import socket
    import urllib.parse

    from candlecast.cli import embedded
    from candlecast.settings import get_settings
    from tests.browser import Browser, chromium
    from tests.helpers import REPO

    if chromium() is None:
        pytest.skip("chromium missing (scripts/setup.sh)")
    pair, _, _ = pipeline_run
    tracking.configure()
    client = MlflowClient()
    experiment = client.get_experiment_by_name(pair.stream.experiment)
    found = client.search_runs([experiment.experiment_id], "tags.`run.role` = 'kind'")
    kinds = {run.info.run_id: run.data.tags["kind"] for run in found}
    assert sorted(kinds.values()) == sorted(pair.training.kinds)
    with socket.socket() as probe:  # a free port for the MLflow UI
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = get_settings().model_copy(update={"mlflow_ui_url": base})
    proc = embedded.start(embedded.mlflow_ui_command(settings), tmp_path / "mlflow.log")
    folder = Path(os.environ.get("CANDLECAST_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    try:
        embedded.wait_http(f"{base}/health", timeout=300, proc=proc)
        query = urllib.parse.urlencode(
            {"runs": json.dumps(list(kinds)), "experiments": json.dumps([experiment.experiment_id])}
        )
        with Browser.launch(tmp_path / "chromium") as browser:
            browser.goto(f"{base}/#/compare-runs?{query}")
            text = browser.wait_for(
                "document.body.innerText.includes('holdout_rmse_ratio')"
                " ? document.body.innerText : null",
                "the compare page with the kinds' metrics",
            )
            # the metrics table in view (the page opens on its plots): its heading scrolled
            # to the top (scrolling a cell would scroll the names apart from their values)
            browser.wait_for(
                "(() => { const head = document.evaluate("
                "\"//h2[normalize-space(.)='Metrics'] | //*[normalize-space(text())='Metrics']\","
                " document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
                " if (!head) return false; head.scrollIntoView({block: 'start'});"
                " return Math.abs(head.getBoundingClientRect().top) < 80; })()",
                "the metrics table in view",
            )
            browser.screenshot(folder / "mlflow-compare.png")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "holdout_mae_ratio" in text
    for run_id in kinds:
        assert run_id in text or client.get_run(run_id).info.run_name in text


#: The task instances table of a run page: ``[task id, map index name, top, bottom]`` per row,
#: once the names of mapped fits are shown (JavaScript, falsy until then).
TASK_ROWS = """(() => {
  const heads = Array.from(document.querySelectorAll('table thead th'), th => th.innerText.trim());
  const task = heads.indexOf('Task ID'), index = heads.indexOf('Map Index');
  const rows = Array.from(document.querySelectorAll('table tbody tr'), tr => {
    const cells = tr.querySelectorAll('td'), box = tr.getBoundingClientRect();
    return cells.length > Math.max(task, index)
      && [cells[task].innerText.trim(), cells[index].innerText.trim(), box.top, box.bottom];
  });
  return task >= 0 && index >= 0 && rows.length && rows.every(Boolean)
    && rows.some(([id, name]) => id === 'fit' && name) && rows;
})()"""


def test_the_airflow_run_page_shows_the_kinds_fits_and_the_gates_note(pipeline_run, tmp_path):
    """The Airflow UI's page of the real train DAG run, in headless Chromium: the mapped fit
    tasks under their kinds' names (``map_index_template``) and, in the run's note dialog, what
    the gate decided; a screenshot is kept as a test artifact (DOM assertions, the PNG is for
    people). Only the API server runs, on the metadata DB ``dag.test()`` wrote to."""
    import json
    import os
    import socket
    import urllib.parse

    from airflow.models.dagrun import DagRun
    from airflow.settings import engine
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from candlecast.cli import embedded
    from candlecast.settings import get_settings
    from tests.browser import Browser, chromium
    from tests.helpers import REPO

    if chromium() is None:
        pytest.skip("chromium missing (scripts/setup.sh)")
    pair, _, train = pipeline_run
    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == train.dag_id, DagRun.run_id == train.run_id)
        note = session.scalar(query).note
    assert note
    with socket.socket() as probe:  # a free port for the API server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = get_settings()
    env = embedded.airflow_env(settings, "127.0.0.1", port)
    # the UI reads the very database the pipeline's runs are in
    served = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).database
    assert Path(served).resolve() == Path(engine.url.database).resolve()
    command = [str(embedded.BIN / "airflow"), "api-server", "--port", str(port)]
    proc = embedded.start(command, tmp_path / "api-server.log", env)
    base = embedded.airflow_base_url("127.0.0.1", port)
    run = urllib.parse.quote(train.run_id, safe="")
    folder = Path(os.environ.get("CANDLECAST_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    try:
        embedded.wait_http(f"{base}/api/v2/monitor/health", timeout=300, proc=proc)
        # tall enough for every task instance of the run below the note dialog
        with Browser.launch(tmp_path / "chromium", height=1160) as browser:
            browser.goto(f"{base}/")
            browser.wait_for("!!document.querySelector('input[name=password]')", "login form")
            browser.type_into("input[name=username]", "admin")
            browser.type_into("input[name=password]", embedded.airflow_password(settings))
            browser.evaluate("document.querySelector('button[type=submit]').click()")
            browser.wait_for("!location.pathname.startsWith('/auth/')", "the UI after login")
            # the run's task instances in the order they ran (the fits below the dialog)
            browser.goto(f"{base}/dags/{train.dag_id}/runs/{run}?sort=start_date")
            browser.wait_for(TASK_ROWS, "the run's task instances with the fits' names")
            browser.evaluate("document.querySelector('button[aria-label=Note]').click()")
            dialog = browser.wait_for(
                f"""(() => {{
                  const dialog = document.querySelector('[role=dialog][data-state=open]');
                  const shown = dialog && dialog.innerText.replace(/\\s+/g, ' ');
                  if (!shown || !shown.includes({json.dumps(" ".join(note.split()))})
                      || dialog.getAnimations({{subtree: true}}).length) return null;
                  const box = dialog.getBoundingClientRect();
                  return [shown, box.top, box.bottom, innerHeight];
                }})()""",
                "the run's note dialog with the gate's decision",
            )
            browser.screenshot(folder / "airflow-grid.png")
            rows = browser.evaluate(TASK_ROWS)  # where they are with the dialog open
    finally:
        embedded.stop([proc], timeout=60)
    fits = [(name, top, bottom) for task, name, top, bottom in rows if task == "fit"]
    assert sorted(name for name, _, _ in fits) == sorted(pair.training.kinds)
    shown, _, dialog_bottom, height = dialog
    assert "Dag Run Note" in shown
    # both in the screenshot: the fits' rows below the dialog, inside the viewport
    assert all(dialog_bottom <= top and bottom <= height for _, top, bottom in fits)
