"""Promotion in the MLflow registry, around the pure decision of :mod:`.gate`.

The challenger run's model is registered and aliased ``challenger``; the current champion is
re-scored on the challenger's holdout through its own kind; :func:`~.gate.decide` names the
winner, which gets the ``champion`` alias. The decision and its reason are logged on the
challenger's run (tags and ``promotion/decision.json``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from candlecast.config import PairConfig
from candlecast.evaluation.metrics import score
from candlecast.modeling import registry
from candlecast.modeling.gate import Outcome, Scores, decide
from candlecast.modeling.kinds import BASELINE, get_kind
from candlecast.modeling.kinds.base import model_inputs
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    model_name: str
    champion_version: str
    champion_kind: str
    challenger_version: str
    challenger_kind: str
    outcome: str  # an Outcome value
    reason: str
    metric: str
    scores: dict[str, float | None]


def promote(
    pair: PairConfig, run_id: str, model_uri: str, settings: Settings | None = None
) -> Decision:
    """Register the run's model (``model_uri``) as challenger and decide who is champion."""
    settings = settings or get_settings()
    registry.configure(settings)
    client = MlflowClient()
    stream = pair.stream
    name = stream.registered_model
    metric = settings.primary_metric
    run = client.get_run(run_id)
    kind = run.data.tags.get("kind", "")
    champion = registry.champion(client, stream)
    champion_kind = champion.tags.get("kind", "") if champion else None
    scores = Scores(
        challenger=run.data.metrics[f"holdout_{metric}"],
        persistence=run.data.metrics[f"persistence_{metric}"],
        champion=_score_on_holdout(client, champion, run_id, metric) if champion else None,
    )
    challenger = _register(client, stream, model_uri, run_id, kind)
    client.set_registered_model_alias(name, registry.CHALLENGER, challenger.version)
    verdict = decide(scores, metric, champion_is_baseline=champion_kind == BASELINE)
    if verdict.outcome is Outcome.PROMOTED:
        winner = challenger
    elif verdict.register_baseline:
        winner = _register_baseline(client, stream, run_id)
    else:
        winner = champion
    client.set_registered_model_alias(name, registry.CHAMPION, winner.version)
    decision = Decision(
        name,
        str(winner.version),
        winner.tags.get("kind", ""),
        str(challenger.version),
        kind,
        verdict.outcome.value,
        verdict.reason,
        metric,
        asdict(scores),
    )
    _log_decision(client, run_id, decision)
    log.info("%s: %s", name, verdict.reason)
    return decision


def _score_on_holdout(client: MlflowClient, version: Any, run_id: str, metric: str) -> float | None:
    """The champion's score on the challenger's holdout (None if it cannot be scored)."""
    holdout = registry.load_holdout(run_id)
    features = registry.run_features(client, version.run_id)
    if not set(features) <= set(holdout.columns):
        log.warning("champion v%s needs features this holdout lacks", version.version)
        return None
    kind = get_kind(version.tags.get("kind", ""))
    model = kind.load(f"models:/{version.name}/{version.version}", features)
    predicted = model.predict(model_inputs(holdout, features))
    return score(holdout["target"].to_numpy(), predicted)[metric]


def _register(client: MlflowClient, stream: Stream, uri: str, run_id: str, kind: str) -> Any:
    name = stream.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags=stream.run_tags,
            description=f"Next-candle log-return forecaster of {stream.label}; "
            "alias champion is served.",
        )
    version = mlflow.register_model(uri, name, tags={"kind": kind, "run_id": run_id})
    return client.get_model_version(name, version.version)


def _register_baseline(client: MlflowClient, stream: Stream, run_id: str) -> Any:
    """Log the baseline kind on the challenger's run (same input schema) and register it."""
    holdout = registry.load_holdout(run_id)
    columns = registry.run_features(client, run_id)
    example = pd.DataFrame(model_inputs(holdout, columns), columns=columns)
    with mlflow.start_run(run_id=run_id):
        uri = get_kind(BASELINE)(columns).log_model(example)
    return _register(client, stream, uri, run_id, BASELINE)


def _log_decision(client: MlflowClient, run_id: str, decision: Decision) -> None:
    client.set_tag(run_id, "promotion.outcome", decision.outcome)
    client.set_tag(run_id, "promotion.reason", decision.reason)
    client.set_tag(run_id, "promotion.champion_version", decision.champion_version)
    if decision.scores["champion"] is not None:
        client.log_metric(
            run_id, f"champion_holdout_{decision.metric}", decision.scores["champion"]
        )
    client.log_text(run_id, json.dumps(asdict(decision), indent=2), "promotion/decision.json")
