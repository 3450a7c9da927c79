"""Test-wide state: every test session gets its own CANDLECAST_HOME (and so its own Airflow,
MLflow, Feast and BentoML stores), set before anything reads settings or imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="candlecast-test-"))

os.environ["CANDLECAST_HOME"] = str(_HOME)
os.environ["CANDLECAST_PAIRS"] = str(REPO / "config" / "pairs.yaml")
os.environ.pop("CANDLECAST_MLFLOW_TRACKING_URI", None)
os.environ.pop("CANDLECAST_ONLINE_STORE", None)
os.environ["AIRFLOW_HOME"] = str(_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ["GX_ANALYTICS_ENABLED"] = "False"


@pytest.fixture(scope="session")
def home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def btc_candles():
    """The bundled BTC/USD hourly candles, as the replay exchange reads them."""
    from candlecast.data.importers import read_history

    return read_history(REPO / "data" / "bundled" / "BTC_USD-Hourly.csv")


#: The demo day: the last complete day of the bundled data (data interval 02-28 .. 03-01).
DAG_RUN_END = "2022-03-01"


@pytest.fixture(scope="session")
def airflow_db(home):
    """A migrated Airflow metadata DB (SQLite) under the session's CANDLECAST_HOME."""
    import subprocess
    import sys

    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return home / "airflow"


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers import quiet_in_process_servers

    quiet_in_process_servers()  # after Airflow's import, which put its own filter in front
    return DagBag(dag_folder=str(REPO / "dags"), include_examples=False)


@pytest.fixture(scope="session")
def pipeline_run(dagbag):
    """History backfilled, then one real ``dag.test()`` run of the default pair's candles DAG
    and one of its train DAG; returns (pair, candles run, train run)."""
    from datetime import UTC, datetime, timedelta

    from candlecast.orchestration import stages as pipeline

    pair = pipeline.pair_config("BTC/USD")
    end = datetime.fromisoformat(DAG_RUN_END).replace(tzinfo=UTC)
    days = pair.training.train_days + 10
    pipeline.backfill(pair, end - timedelta(days=days), end - timedelta(days=1))
    candles = dagbag.get_dag(pair.stream.candles_dag_id).test(logical_date=end)
    train = dagbag.get_dag(pair.stream.train_dag_id).test(logical_date=end)
    return pair, candles, train


#: Files that take minutes, mostly waiting on schedulers and servers: started first, so under
#: xdist (scripts/test.sh) they overlap each other and the rest of the suite fills in beside
#: them, instead of one of them starting last and running alone.
_LONG_FIRST = (
    "tests/integration/test_celery_stack.py",
    "tests/dags/test_scheduler_e2e.py",
    "tests/serving/test_live_service.py",
    "tests/dags/test_ui_screenshot.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return _LONG_FIRST.index(path) if path in _LONG_FIRST else len(_LONG_FIRST)

    items.sort(key=rank)  # stable: each file's own order is kept


#: Files that use another file's costly session fixture (``pipeline_run``: a real candles and
#: train run of the default stream, every kind and target) run on that file's xdist worker, so
#: the fixture is built once per session instead of once per worker that needs it.
_SAME_WORKER = {"tests/serving/test_service.py": "tests/dags/test_pipeline_run.py"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile`` (scripts/test.sh), with the files of ``_SAME_WORKER`` sent along with
    the file whose fixture they use."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return _SAME_WORKER.get(scope, scope)

    return SharedFixtureScheduling(config, log)


def _quiet() -> None:
    from tests.helpers import quiet_in_process_servers  # imports candlecast: after the env above

    quiet_in_process_servers()


# Each phase of each test starts with the filters in front (pytest restores them after a test);
# a fixture that imports Airflow for the first time applies them again after that import.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> object:
    _quiet()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    _quiet()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    _quiet()
    return (yield)
