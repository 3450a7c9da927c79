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

import pandas as pd

from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling import registry
from candlecast.modeling.card import ModelCard
from candlecast.modeling.kinds import BASELINE, get_kind
from candlecast.modeling.kinds.base import model_inputs
from candlecast.modeling.training import plot_holdout, scored_card
from candlecast.modeling.version_card import legacy_card, logged_card
from candlecast.names import Stream, run_name

#: Tag of the baseline run naming the challenger run it was registered beside.
FOR_RUN = keys.BASELINE_FOR_RUN
#: The challenger's tags a baseline run must not take (its kind and outcome are its own).
OWN_TAGS = (
    keys.KIND,
    keys.RUN_ROLE,
    keys.MODEL_URI,
    keys.PROMOTION_PREFIX,
    keys.RUN_NAME,
    keys.LOG_MODEL_HISTORY,
)


def baseline_run(
    client: registry.MlflowClient, stream: Stream, challenger_id: str, holdout: pd.DataFrame
) -> Any:
    """The finished persistence run beside ``challenger_id`` (a run of ``stream``; logged now
    when there is none): its ``model_uri`` tag is the logged persistence model."""
    challenger = client.get_run(challenger_id)
    found = client.search_runs(
        [challenger.info.experiment_id],
        f"tags.`{FOR_RUN}` = '{challenger_id}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found and keys.MODEL_URI in found[0].data.tags:
        return found[0]
    return client.get_run(_log_run(stream, challenger, holdout))


def _log_run(stream: Stream, challenger: Any, holdout: pd.DataFrame) -> str:
    # the challenger's tags are copied so that the MLflow UI shows the same window and data
    tags = {
        key: value for key, value in challenger.data.tags.items() if not key.startswith(OWN_TAGS)
    }
    logged = logged_card(challenger)  # None: a challenger trained before cards
    card = logged or legacy_card(stream, {}, challenger)
    end = datetime.fromisoformat(card.interval_end) if card.interval_end else None
    name = run_name(BASELINE, end) if end else BASELINE
    columns = list(card.features)
    own = registry.holdout_metrics(challenger.data.metrics, BASELINE)
    with registry.start_run(
        experiment_id=challenger.info.experiment_id,
        run_name=name,
        tags=tags
        | {keys.KIND: BASELINE, keys.RUN_ROLE: "baseline", FOR_RUN: challenger.info.run_id},
    ) as run:
        registry.log_params({keys.KIND: BASELINE, keys.WINDOW: 1, keys.FEATURES: ",".join(columns)})
        baselines = {k: v for k, v in challenger.data.metrics.items() if k.startswith(BASELINE)}
        registry.log_metrics(baselines | own)
        _log_holdout(holdout)
        example = pd.DataFrame(model_inputs(holdout, columns), columns=columns)
        uri = get_kind(BASELINE)(columns).log_model(example, name="persistence")
        _log_card(logged, run.info.run_id, columns, own, baselines)
        registry.set_tag(keys.MODEL_URI, uri)  # marks the run complete, for reuse
    return str(run.info.run_id)


def _log_card(
    challenger: ModelCard | None,
    run_id: str,
    columns: list[str],
    own: dict[str, float],
    baselines: dict[str, float],
) -> None:
    """Persistence's card: the challenger's (same stream, windows and data) with its own kind,
    inputs and scores. A challenger trained before cards were written has none to copy."""
    if challenger is None:
        return
    kind = get_kind(BASELINE)(columns)
    card = challenger.model_copy(
        update={
            "kind": BASELINE,
            "kind_params": kind.params.model_dump(mode="json"),
            "features": list(columns),
            "window": 1,
            "note": kind.serving_note,
        }
    )
    scores = {k[len(keys.HOLDOUT_PREFIX) :]: v for k, v in own.items() if "_ratio" not in k}
    card = scored_card(card, scores, baselines, run_id)
    registry.log_text(card.model_dump_json(indent=2), keys.CARD_ARTIFACT)


def _log_holdout(holdout: pd.DataFrame) -> None:
    """The challenger's holdout with persistence's forecasts (a zero log return)."""
    frame = holdout.copy()
    frame["predicted"] = frame["predicted"].where(~frame["holdout"], 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(registry.HOLDOUT_ARTIFACT).name
        frame.to_parquet(path)
        registry.log_artifact(str(path), artifact_path=str(Path(registry.HOLDOUT_ARTIFACT).parent))
    plot_holdout(frame[frame["holdout"]])  # the plot every kind's run shows: here a flat line
