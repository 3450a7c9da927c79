"""The persistence baseline's own MLflow run, which its registered version points at.

When the gate serves persistence, its version must name a run (the MLflow UI's "Source Run"
link, and every reader of ``version.run_id``: export, deploy, monitoring). Logging persistence
on the challenger's run would make that link open the learned kind that lost. So persistence
gets a sibling run under the same training run: the challenger's window, data and feature
tags, the baseline's holdout scores as its own, the holdout with persistence's forecasts, and
the logged model. A re-run for the same challenger finds that run again (tag
``baseline.for_run``) instead of logging a second one.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from candlecast.modeling import registry
from candlecast.modeling.kinds import BASELINE, get_kind
from candlecast.modeling.kinds.base import model_inputs
from candlecast.modeling.training import plot_holdout
from candlecast.names import run_name

#: Tag of the baseline run naming the challenger run it was registered beside.
FOR_RUN = "baseline.for_run"
#: The challenger's tags a baseline run must not take (its kind and outcome are its own).
OWN_TAGS = ("kind", "run.role", "model_uri", "promotion.", "mlflow.runName", "mlflow.log-model")


def baseline_run(client: MlflowClient, challenger_id: str, holdout: pd.DataFrame) -> Any:
    """The finished persistence run beside ``challenger_id`` (logged now when there is none):
    its ``model_uri`` tag is the logged persistence model."""
    challenger = client.get_run(challenger_id)
    found = client.search_runs(
        [challenger.info.experiment_id],
        f"tags.`{FOR_RUN}` = '{challenger_id}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found and "model_uri" in found[0].data.tags:
        return found[0]
    return client.get_run(_log_run(challenger, holdout))


def _log_run(challenger: Any, holdout: pd.DataFrame) -> str:
    tags = {
        key: value for key, value in challenger.data.tags.items() if not key.startswith(OWN_TAGS)
    }
    end = datetime.fromisoformat(tags["interval_end"]) if "interval_end" in tags else None
    name = run_name(BASELINE, end) if end else BASELINE
    columns = str(challenger.data.params["features"]).split(",")
    own = registry.holdout_metrics(challenger.data.metrics, BASELINE)
    with mlflow.start_run(
        experiment_id=challenger.info.experiment_id,
        run_name=name,
        tags=tags | {"kind": BASELINE, "run.role": "baseline", FOR_RUN: challenger.info.run_id},
    ) as run:
        mlflow.log_params({"kind": BASELINE, "window": 1, "features": ",".join(columns)})
        baselines = {k: v for k, v in challenger.data.metrics.items() if k.startswith(BASELINE)}
        mlflow.log_metrics(baselines | own)
        _log_holdout(holdout)
        example = pd.DataFrame(model_inputs(holdout, columns), columns=columns)
        uri = get_kind(BASELINE)(columns).log_model(example, name="persistence")
        mlflow.set_tag("model_uri", uri)  # marks the run complete, for reuse
    return str(run.info.run_id)


def _log_holdout(holdout: pd.DataFrame) -> None:
    """The challenger's holdout with persistence's forecasts (a zero log return)."""
    frame = holdout.copy()
    frame["predicted"] = frame["predicted"].where(~frame["holdout"], 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(registry.HOLDOUT_ARTIFACT).name
        frame.to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(registry.HOLDOUT_ARTIFACT).parent))
    plot_holdout(frame[frame["holdout"]])  # the plot every kind's run shows: here a flat line
