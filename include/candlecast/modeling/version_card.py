"""The card of a registered version of a stream's next-candle return model, from MLflow.

Training logs each kind's card on its run (:mod:`.training`); a version's card is its run's,
completed with the version and the gate's decision. A run logged before cards were written
gets one built from what it recorded (:func:`legacy_card`), the one place that still reads
those params, so that an older champion can still be exported, served and monitored.
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
    card = registry.load_card(run.info.run_id) or legacy_card(stream, version.tags, run)
    decision = str(version.description or "") or card.decision
    return card.with_version(str(version.version), run.info.run_id).model_copy(
        update={"decision": decision}
    )


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
        data_version=str(tags.get(keys.DATA_VERSION, "")),
        scores={k[len(keys.HOLDOUT_PREFIX) :]: float(v) for k, v in own.items()},
        baseline=BASELINE,
        baseline_scores={
            k[len(prefix) :]: float(v) for k, v in metrics.items() if k.startswith(prefix)
        },
        decision=str(tags.get(keys.PROMOTION_REASON, "")),
        note=get_kind(kind).serving_note,
    )
