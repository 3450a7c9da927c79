"""Promotion in the MLflow registry, around the pure decision of :mod:`.gate`.

The challenger run's served model (refitted on the whole window) is registered and aliased
``challenger``. The evidence is built from the challenger's logged holdout: its holdout-fit
predictions, persistence (0), and the current champion re-scored through its own kind on the
holdout rows after the end of the champion's training data only. :func:`~.gate.decide` names
the winner, which gets the ``champion`` alias. The decision, its evidence and its reason are
logged on the challenger's run and its parent (tags and ``promotion/decision.json``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.errors import ParityError
from candlecast.evaluation import metrics, significance
from candlecast.evaluation.significance import Loss, windowed_loss_test
from candlecast.modeling import history, registry
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.baseline_run import baseline_run
from candlecast.modeling.card import ModelCard
from candlecast.modeling.datasets import holdout_inputs
from candlecast.modeling.gate import Champion, Comparison, Evidence, Outcome, Policy, decide
from candlecast.modeling.kinds import BASELINE, get_kind
from candlecast.modeling.version_card import run_card, version_card
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings
from candlecast.targets import Target
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

_LOSS: dict[str, Loss] = {"rmse": "squared", "mae": "absolute"}


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
    scores: dict[str, float | None]  # on the primary metric
    evidence: dict[str, Any]
    #: The winner is not the current champion (it becomes champion once deployed).
    changes_champion: bool = False
    #: Decided and recorded only: nothing was registered and no alias moved.
    dry_run: bool = False
    #: The training window the decision was made on (ISO times; its end is the data time the
    #: decision holds from, :mod:`.history`).
    window_start: str = ""
    window_end: str = ""


def compare(
    errors: np.ndarray, opponent: np.ndarray, policy: Policy, windows: int
) -> tuple[Comparison, ...]:
    """The forecaster's errors against an opponent's on the same rows, per gate metric."""
    found = []
    for metric in policy.metrics:
        test = windowed_loss_test(errors, opponent, loss=_LOSS[metric], windows=windows)
        score, other = (_metric(metric, e) for e in (errors, opponent))
        found.append(Comparison(metric, score, other, test.p_value, len(errors)))
    return tuple(found)


def compare_target(
    target: Target, y: np.ndarray, forecast: np.ndarray, opponent: np.ndarray
) -> Comparison:
    """A forecast of ``target`` against an opponent's on the same rows ``y``, by the target
    gate's rule: the primary scores, and the one-sided Diebold-Mariano test on the per-row
    primary loss (its long-run variance over ``horizon - 1`` lags: the rows' outcomes overlap).

    Raises:
        ValueError: fewer than 2 rows, or shapes differ.
    """
    test = significance.diebold_mariano_losses(
        target.loss(y, forecast),
        target.loss(y, opponent),
        horizon=min(target.horizon, len(y) - 1),
        name=target.primary,
    )
    return Comparison(
        target.primary,
        target.primary_score(y, forecast),
        target.primary_score(y, opponent),
        test.p_value,
        len(y),
    )


def _metric(metric: str, errors: np.ndarray) -> float:
    scorer = metrics.rmse if metric == "rmse" else metrics.mae
    return scorer(np.zeros_like(errors), errors)


def promote(
    pair: PairConfig,
    run_id: str,
    model_uri: str,
    settings: Settings | None = None,
    *,
    commit: bool = True,
    dry_run: bool = False,
) -> Decision:
    """Register the run's model (``model_uri``) as challenger and decide who is champion.

    Args:
        commit: move the ``champion`` alias to the winner now. The pipeline passes False and
            calls :func:`commit` only after the winner is exported, parity-checked and
            deployed, so a failure on the way leaves the previous champion champion and served.
        dry_run: decide and record the decision, but register and move nothing.

    Re-running the same run registers nothing new: its registered version is reused.
    """
    settings = settings or get_settings()
    registry.configure(settings)
    client = registry.client()
    stream = pair.stream
    gate = pair.training.gate
    policy = Policy(gate.alpha, gate.min_margin, tuple(gate.metrics))
    run = client.get_run(run_id)
    card = run_card(stream, run)  # the challenger's: its kind and training window
    champion = registry.champion(client, stream)
    held = (champion, version_card(stream, champion)) if champion is not None else None
    holdout = registry.load_holdout(run_id)
    evidence, scores = _evidence(pair, card, holdout, held, policy)
    kind = card.kind
    verdict = decide(evidence, policy)
    baseline_run_id = None  # persistence's own run, when this decision registered it
    if dry_run:
        challenger_version = winner_version = ""
        winner_kind = kind if verdict.outcome is Outcome.PROMOTED else ""
    else:
        challenger = _register(client, stream, model_uri, run_id, kind)
        client.set_registered_model_alias(
            stream.registered_model, registry.CHALLENGER, challenger.version
        )
        if verdict.outcome is Outcome.PROMOTED:
            winner = challenger
        elif verdict.register_baseline:
            winner = _register_baseline(client, stream, run_id, holdout)
            baseline_run_id = winner.run_id
        else:
            winner = champion
        challenger_version, winner_version = str(challenger.version), str(winner.version)
        winner_kind = kind if winner is challenger else version_card(stream, winner).kind
    decision = Decision(
        stream.registered_model,
        winner_version,
        winner_kind,
        challenger_version,
        kind,
        verdict.outcome.value,
        verdict.reason,
        settings.primary_metric,
        {who: scores.get(who, {}).get(settings.primary_metric) for who in scores},
        _as_dict(evidence),
        changes_champion=bool(winner_version)
        and (champion is None or winner_version != str(champion.version)),
        dry_run=dry_run,
        window_start=card.train_start,
        window_end=card.interval_end,
    )
    if not dry_run:
        _describe_versions(client, decision)
    if commit and not dry_run:
        commit_decision(pair, decision, settings)
    _log_decision(client, run, decision, baseline_run_id)
    log.info("%s: %s%s", stream.registered_model, "[dry run] " * dry_run, verdict.reason)
    return decision


def _describe_versions(client: registry.MlflowClient, decision: Decision) -> None:
    """Write the gate's decision into the registered versions' descriptions (the MLflow UI
    shows them on the version's page): the challenger's, and the winner's when it differs."""
    name = decision.model_name
    text = f"{decision.outcome}: {decision.reason}"
    client.update_model_version(name, decision.challenger_version, description=text[:5000])
    if decision.champion_version and decision.champion_version != decision.challenger_version:
        found = client.get_model_version(name, decision.champion_version)
        if not found.description:  # a new baseline version: why it serves
            client.update_model_version(
                name, decision.champion_version, description=f"serves: {text}"[:5000]
            )


def commit_decision(
    pair: PairConfig, decision: Decision, settings: Settings | None = None
) -> tuple[str | None, str]:
    """Make the decision's winner the champion (a no-op when it already is)."""
    settings = settings or get_settings()
    registry.configure(settings)
    client = registry.client()
    current = registry.champion(client, pair.stream)
    moved: tuple[str | None, str]
    if current is not None and str(current.version) == decision.champion_version:
        moved = str(current.version), decision.champion_version
    else:
        moved = registry.move_champion(
            client, pair.stream, decision.champion_version, decision.reason, "gate"
        )
    if decision.window_end:
        end = datetime.fromisoformat(decision.window_end)
        start = datetime.fromisoformat(decision.window_start) if decision.window_start else end
        history.record_now(
            pair.stream,
            end,
            decision.champion_version,
            decision.champion_kind,
            (start, end),
            "gate",
            moved[0] != moved[1],
            settings,
            # a losing challenger is forecast in the shadow while this decision holds
            challengers=[decision.challenger_version] if decision.challenger_version else [],
        )
    return moved


def record_manual_move(
    pair: PairConfig, version: str, how: str, since: datetime, settings: Settings | None = None
) -> None:
    """Record a person's champion move (``promote`` or ``rollback``) in the decision history,
    in force from ``since`` (data time: the newest candle's close when it was made), with the
    version's own training window as monitoring's reference."""
    settings = settings or get_settings()
    registry.configure(settings)
    client = registry.client()
    found = client.get_model_version(pair.stream.registered_model, version)
    card = version_card(pair.stream, found) if found.run_id else None
    end = datetime.fromisoformat(card.interval_end) if card and card.interval_end else since
    start = datetime.fromisoformat(card.train_start) if card and card.train_start else end
    kind = card.kind if card else ""
    history.record_now(pair.stream, since, str(version), kind, (start, end), how, True, settings)


def parity_fallback(
    pair: PairConfig, decision: Decision, failure: str, settings: Settings | None = None
) -> tuple[str, str]:
    """Who serves when the decision's winner cannot be exported (its ONNX graph fails the
    parity check): the current champion when there is another one (it was exported and
    served already), else the persistence baseline, registered from the challenger's run.
    Returns (version, reason); the reason is logged on the challenger's run.

    Raises:
        ParityError: the winner already is the baseline (nothing simpler to fall back on).
    """
    settings = settings or get_settings()
    registry.configure(settings)
    client = registry.client()
    stream = pair.stream
    champion = registry.champion(client, stream)
    failed = f"{decision.champion_kind} v{decision.champion_version} failed ONNX parity"
    if champion is not None and str(champion.version) != decision.champion_version:
        version = str(champion.version)
        reason = f"{failed} ({failure}); champion v{version} stays"
    elif decision.champion_kind == BASELINE:
        raise ParityError(failure)
    else:
        challenger = client.get_model_version(stream.registered_model, decision.challenger_version)
        run_id = str(challenger.run_id)
        baseline = _register_baseline(client, stream, run_id, registry.load_holdout(run_id))
        version = str(baseline.version)
        reason = f"{failed} ({failure}); serving {BASELINE} v{version}"
    log.warning("%s: %s", stream.registered_model, reason)
    _log_fallback(client, decision, reason)
    return version, reason


def _log_fallback(client: registry.MlflowClient, decision: Decision, reason: str) -> None:
    version = client.get_model_version(decision.model_name, decision.challenger_version)
    run = client.get_run(str(version.run_id))
    parent = run.data.tags.get(keys.PARENT_RUN_ID)
    for run_id in filter(None, [run.info.run_id, parent]):
        client.set_tag(run_id, keys.PROMOTION_PARITY_FALLBACK, reason[:5000])


def _evidence(
    pair: PairConfig,
    card: ModelCard,
    holdout: pd.DataFrame,
    held: tuple[Any, ModelCard] | None,
    policy: Policy,
) -> tuple[Evidence, dict[str, dict[str, float]]]:
    """The gate's evidence, and the plain scores of each competitor (for the record): the
    challenger's (its ``card``) against persistence and, when there is one, the champion
    (``held``: its registered version and card)."""
    windows = pair.training.gate.windows
    rows = _scored_rows(holdout)
    errors = rows["predicted"].to_numpy() - rows["target"].to_numpy()
    persistence = -rows["target"].to_numpy()
    scores = {"challenger": _scores(errors), "persistence": _scores(persistence)}
    vs_persistence = compare(errors, persistence, policy, windows)
    if held is None:
        return Evidence(vs_persistence), scores
    champion, champion_card = held
    champion_end = _last_event(champion_card)
    challenger_end = _last_event(card)
    # a backfill's older interval never replaces a champion fitted on newer data
    newer = bool(champion_end and challenger_end and champion_end > challenger_end)
    if champion_card.kind == BASELINE:
        kind = Champion.BASELINE
        return Evidence(vs_persistence, kind, champion_trained_on_newer_data=newer), scores
    fresh = _champion_errors(pair, champion, champion_card, holdout, champion_end)
    if newer or fresh is None or len(fresh) < 2 * windows:
        return Evidence(
            vs_persistence, Champion.TRAINED, champion_trained_on_newer_data=newer
        ), scores
    joined = rows.merge(fresh, on="event_timestamp")
    challenger_errors = joined["predicted"].to_numpy() - joined["target"].to_numpy()
    champion_errors = joined["champion_error"].to_numpy()
    scores["champion"] = _scores(champion_errors)
    return (
        Evidence(
            vs_persistence,
            Champion.TRAINED,
            challenger_vs_champion=compare(challenger_errors, champion_errors, policy, windows),
            champion_vs_persistence=compare(
                champion_errors, -joined["target"].to_numpy(), policy, windows
            ),
        ),
        scores,
    )


def _scores(errors: np.ndarray) -> dict[str, float]:
    return {metric: _metric(metric, errors) for metric in _LOSS}


def _scored_rows(holdout: pd.DataFrame) -> pd.DataFrame:
    rows = holdout[holdout["holdout"]]
    return rows[["event_timestamp", "target", "predicted"]].reset_index(drop=True)


def _last_event(card: ModelCard) -> pd.Timestamp | None:
    """The time of the last row a model's served fit was fitted on: the served model is the
    refit on the whole window, train and holdout, so its card's ``holdout_end``."""
    return pd.Timestamp(card.holdout_end) if card.holdout_end else None


def _champion_errors(
    pair: PairConfig,
    version: Any,
    card: ModelCard,
    holdout: pd.DataFrame,
    after: pd.Timestamp | None,
) -> pd.DataFrame | None:
    """The champion's errors (its registered ``version`` and ``card``) on the challenger's
    holdout rows after its own training data (None when it cannot be scored there: other
    features, or no such rows)."""
    features = card.features
    if after is None or not set(features) <= set(holdout.columns):
        return None
    model = get_kind(card.kind).load(f"models:/{version.name}/{version.version}", features)
    scored = holdout_inputs(holdout, features, model.window, timeframe_ms(pair.timeframe))
    fresh = (scored.times > after).to_numpy()
    if not fresh.any():
        return None
    errors = model.predict(scored.x[fresh]) - scored.target[fresh]
    times = scored.times[fresh].reset_index(drop=True)
    return pd.DataFrame({"event_timestamp": times, "champion_error": errors})


def _register(
    client: registry.MlflowClient, stream: Stream, uri: str, run_id: str, kind: str
) -> Any:
    name = stream.registered_model
    try:
        client.get_registered_model(name)
    except registry.MlflowException:
        client.create_registered_model(
            name,
            tags=stream.run_tags,
            description=f"Next-candle log-return forecaster of {stream.label}; "
            "alias champion is served.",
        )
    # a re-run of the same interval on the same data reuses its run, and so its version
    existing = _registered(client, stream, run_id, kind)
    if existing is not None:
        return existing
    version = registry.register_model(
        uri, name, tags={keys.KIND: kind, keys.VERSION_RUN_ID: run_id}
    )
    return client.get_model_version(name, version.version)


def _register_baseline(
    client: registry.MlflowClient, stream: Stream, run_id: str, holdout: pd.DataFrame
) -> Any:
    """Register the baseline kind from its own run beside the challenger's (same window and
    inputs, :mod:`.baseline_run`), so its version's source run is persistence's, not the
    challenger's that lost."""
    existing = _registered(client, stream, run_id, BASELINE)  # registered on it before
    if existing is not None:
        return existing
    run = baseline_run(client, stream, run_id, holdout)
    return _register(client, stream, run.data.tags[keys.MODEL_URI], run.info.run_id, BASELINE)


def _registered(
    client: registry.MlflowClient, stream: Stream, run_id: str, kind: str
) -> Any | None:
    """The version already registered from this run for this kind (its card's), if any."""
    name = stream.registered_model
    for found in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        version = client.get_model_version(name, found.version)
        if version_card(stream, version).kind == kind:
            return version
    return None


def _as_dict(evidence: Evidence) -> dict[str, Any]:
    payload = asdict(evidence)
    payload["champion"] = evidence.champion.value
    return payload


def _log_decision(
    client: registry.MlflowClient, run: Any, decision: Decision, baseline_run_id: str | None = None
) -> None:
    """The decision as tags of the challenger's run, its training run and, when the decision
    serves the baseline, the baseline's own run (the source run of the version served)."""
    parent = run.data.tags.get(keys.PARENT_RUN_ID)
    for run_id in dict.fromkeys(filter(None, [run.info.run_id, parent, baseline_run_id])):
        client.set_tag(run_id, keys.PROMOTION_OUTCOME, decision.outcome)
        client.set_tag(run_id, keys.PROMOTION_REASON, decision.reason[:5000])
        client.set_tag(run_id, keys.PROMOTION_CHAMPION_VERSION, decision.champion_version)
        client.set_tag(run_id, keys.PROMOTION_DRY_RUN, str(decision.dry_run).lower())
    champion = decision.scores.get("champion")
    if champion is not None:
        client.log_metric(run.info.run_id, f"champion_holdout_{decision.metric}", champion)
    payload = json.dumps(asdict(decision), indent=2, default=str)
    client.log_text(run.info.run_id, payload, keys.DECISION_ARTIFACT)
