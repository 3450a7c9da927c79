"""The card of a registered version of a stream's next-candle return model, from MLflow.

Training logs each kind's card on its run (:mod:`.training`); a version's card is its run's,
completed with the version and the gate's decision. A run logged before cards were written
gets one built from what it recorded (:func:`legacy_card`), and a card logged before schema 4
gets its training window's end from its run (:func:`logged_card`): the one place that still
reads those tags and params, so that an older champion can still be exported, served and
monitored, and the gate's and monitoring's windows come from a card either way.
"""

from __future__ import annotations

from typing import Any

from candlecast.errors import UnknownVersionError
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling import registry
from candlecast.modeling.card import ModelCard, identity
from candlecast.modeling.kinds import BASELINE, get_kind
from candlecast.names import Stream
from candlecast.targets import get_target


def version_card(stream: Stream, version: Any) -> ModelCard:
    """The card of a registered version (an MLflow ModelVersion of ``stream``'s model): its
    run's card, with the version, its run and the gate's decision (the version's
    description, where the gate wrote it).

    Raises:
        UnknownVersionError: the version has no training run.
    """
    if not version.run_id:
        raise UnknownVersionError(f"{version.name} v{version.version} has no training run")
    run = registry.client().get_run(version.run_id)
    card = run_card(stream, run, version.tags)
    decision = str(version.description or "") or card.decision
    return card.with_version(str(version.version), run.info.run_id).model_copy(
        update={"decision": decision}
    )


def run_card(stream: Stream, run: Any, version_tags: dict[str, str] | None = None) -> ModelCard:
    """The card of a kind's run (an MLflow Run of ``stream``): the one it logged
    (:func:`logged_card`), else one built from what it recorded (:func:`legacy_card`; a
    version's tags name the kind of a baseline registered on another kind's run)."""
    return logged_card(run) or legacy_card(stream, version_tags or {}, run)


def logged_card(run: Any) -> ModelCard | None:
    """The card a kind's run logged at training, or None for a run logged before cards. A card
    of schema 3 or older has no training window end: its run's ``interval_end`` tag is it."""
    card = registry.load_card(run.info.run_id)
    if card is None or card.interval_end:
        return card
    return card.model_copy(update={"interval_end": str(run.data.tags.get(keys.INTERVAL_END, ""))})


def legacy_card(stream: Stream, version_tags: dict[str, str], run: Any) -> ModelCard:
    """The card of a run logged before training wrote cards, from what that run recorded
    (its params and tags): the one place that still reads them, so that a champion trained
    by an older candlecast can be exported (and so served) again."""
    target = get_target("return", 1)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    # the split is the training (parent) run's: every kind of a training shares it
    parent = tags.get(keys.PARENT_RUN_ID)
    split = registry.client().get_run(parent).data.params if parent else params
    kind = str(version_tags.get(keys.KIND) or tags.get(keys.KIND, ""))
    own = registry.holdout_metrics(metrics, kind)
    prefix = f"{BASELINE}_"
    return ModelCard(
        **identity(stream, target, stream.registered_model),
        kind=kind,
        run_id=run.info.run_id,
        features=str(params[keys.FEATURES]).split(","),
        # a baseline once registered on the challenger's run reads its inputs one row at a time
        window=int(params.get(keys.WINDOW, 1)) if kind == tags.get(keys.KIND) else 1,
        train_start=str(split.get(keys.TRAIN_START, "")),
        train_end=str(tags.get(keys.INTERVAL_END, "")),
        holdout_start=str(split.get(keys.HOLDOUT_START, "")),
        holdout_end=str(split.get(keys.HOLDOUT_END, "")),
        interval_end=str(tags.get(keys.INTERVAL_END, "")),
        data_version=str(tags.get(keys.DATA_VERSION, "")),
        scores={k[len(keys.HOLDOUT_PREFIX) :]: float(v) for k, v in own.items()},
        baseline=BASELINE,
        baseline_scores={
            k[len(prefix) :]: float(v) for k, v in metrics.items() if k.startswith(prefix)
        },
        decision=str(tags.get(keys.PROMOTION_REASON, "")),
        note=get_kind(kind).serving_note,
    )
