"""The local MLflow store is created atomically (issue 20 #8): a creation cut short leaves only
a staging file, which the next try replaces; the store itself is never half-migrated."""

import sqlite3

from mlflow import MlflowClient

from candlecast.modeling import registry
from tests.helpers import settings_in


def test_a_creation_cut_short_is_replaced_by_the_next_try(tmp_path):
    settings = settings_in(tmp_path)
    folder = settings.paths.mlflow
    folder.mkdir(parents=True)
    # what a full disk during the first migration leaves: alembic's scratch table
    leftover = folder / "mlflow.db.creating"
    with sqlite3.connect(leftover) as db:
        db.execute("CREATE TABLE _alembic_tmp_experiment_tags (x)")
    registry.configure(settings)
    assert not leftover.exists()
    store = folder / "mlflow.db"
    with sqlite3.connect(store) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "alembic_version" in tables and "_alembic_tmp_experiment_tags" not in tables
    client = MlflowClient(settings.tracking_uri)
    assert client.get_experiment(client.create_experiment("after a cut")).name == "after a cut"
    registry.configure(settings)  # an existing store is used as it is
    assert client.get_experiment_by_name("after a cut") is not None
