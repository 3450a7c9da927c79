"""Promotion gate: the challenger becomes ``champion`` only if it beats both the current
champion and the persistence forecast on the challenger's chronological holdout.

When no trained model beats persistence, the persistence forecaster itself is registered and
made champion: the platform never serves a model it knows to be worse than "no change".
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from candlecast import tracking
from candlecast.config import PairConfig
from candlecast.modeling import model_inputs, score
from candlecast.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    model_name: str
    champion_version: str
    champion_kind: str
    challenger_version: str
    outcome: str  # promoted | kept_champion | persistence
    reason: str
    metric: str
    scores: dict[str, float | None]


def promote(
    pair: PairConfig, run_id: str, model_uri: str, settings: Settings | None = None
) -> Decision:
    """Register the run's model (``model_uri``) as challenger and decide who is champion."""
    settings = settings or get_settings()
    tracking.configure(settings)
    client = MlflowClient()
    name = tracking.model_name(pair)
    metric = settings.primary_metric
    run = client.get_run(run_id)
    challenger_score = run.data.metrics[f"holdout_{metric}"]
    persistence_score = run.data.metrics[f"persistence_{metric}"]
    champion = _champion(client, name)
    champion_score = _score_on_holdout(champion, run_id, metric) if champion else None

    challenger = _register(client, name, model_uri, run_id, "lightgbm")
    client.set_registered_model_alias(name, tracking.CHALLENGER, challenger.version)
    scores = {
        "challenger": challenger_score,
        "persistence": persistence_score,
        "champion": champion_score,
    }
    beats_persistence = challenger_score < persistence_score
    if beats_persistence and (champion_score is None or challenger_score < champion_score):
        winner, outcome = challenger, "promoted"
        reason = _reason("challenger", scores, metric)
    elif champion is not None and champion_score is not None and champion_score < persistence_score:
        winner, outcome = champion, "kept_champion"
        reason = _reason("champion", scores, metric)
    elif champion is not None and champion.tags.get("kind") == "persistence":
        winner, outcome = champion, "persistence"
        reason = _reason("persistence", scores, metric)
    else:
        winner, outcome = _register_persistence(client, name, run_id), "persistence"
        reason = _reason("persistence", scores, metric)
    client.set_registered_model_alias(name, tracking.CHAMPION, winner.version)
    decision = Decision(
        name,
        winner.version,
        winner.tags.get("kind", "lightgbm"),
        challenger.version,
        outcome,
        reason,
        metric,
        scores,
    )
    _log_decision(client, run_id, decision)
    log.info("%s: %s", name, reason)
    return decision


def _champion(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, tracking.CHAMPION)
    except MlflowException:
        return None


def _score_on_holdout(version: Any, run_id: str, metric: str) -> float | None:
    """The champion's score on the challenger's holdout (None if it cannot be scored)."""
    holdout = tracking.load_holdout(run_id)
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    schema = model.metadata.get_input_schema()
    columns = schema.input_names() if schema else []
    if not columns or not set(columns) <= set(holdout.columns):
        log.warning("champion v%s needs features this holdout lacks", version.version)
        return None
    inputs = pd.DataFrame(model_inputs(holdout, columns), columns=columns)
    predicted = np.asarray(model.predict(inputs)).reshape(-1)
    return score(holdout["target"].to_numpy(), predicted)[metric]


def _register(client: MlflowClient, name: str, uri: str, run_id: str, kind: str) -> Any:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Next-candle log-return forecaster; alias champion is served."
        )
    version = mlflow.register_model(uri, name, tags={"kind": kind, "run_id": run_id})
    return client.get_model_version(name, version.version)


def _register_persistence(client: MlflowClient, name: str, run_id: str) -> Any:
    holdout = tracking.load_holdout(run_id)
    columns = client.get_run(run_id).data.params["features"].split(",")
    # the same input schema as the trained models (float64 holding float32 values)
    features = pd.DataFrame(model_inputs(holdout, columns), columns=columns)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="persistence",
            python_model=tracking.PersistenceModel(),
            signature=infer_signature(features, np.zeros(len(features))),
            input_example=features.head(3),
            pip_requirements=tracking.pip_requirements(),
        )
    return _register(client, name, info.model_uri, run_id, "persistence")


def _reason(winner: str, scores: dict[str, float | None], metric: str) -> str:
    shown = ", ".join(
        f"{who} {metric}={value:.6g}" for who, value in scores.items() if value is not None
    )
    return {
        "challenger": f"challenger beats persistence and the champion ({shown})",
        "champion": f"champion kept: challenger does not beat it ({shown})",
        "persistence": f"no trained model beats persistence; serving persistence ({shown})",
    }[winner]


def _log_decision(client: MlflowClient, run_id: str, decision: Decision) -> None:
    client.set_tag(run_id, "promotion.outcome", decision.outcome)
    client.set_tag(run_id, "promotion.reason", decision.reason)
    client.set_tag(run_id, "promotion.champion_version", decision.champion_version)
    if decision.scores["champion"] is not None:
        client.log_metric(
            run_id, f"champion_holdout_{decision.metric}", decision.scores["champion"]
        )
    client.log_text(run_id, json.dumps(asdict(decision), indent=2), "promotion/decision.json")
