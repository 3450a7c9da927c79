"""Register, export and record a target's gate decision (:mod:`.target_training` decides it).

One MLflow run per (target, window) logs every kind's holdout scores and the champion's ONNX
model with its card; the champion is registered in the target's own registered model, its
served copy written under ``<models>/<stream>/targets/<target key>/v<version>`` and only then
do the ``champion`` alias and the ``champion`` link move.

When a learned kind lost the gate, the best of them (one per target, so the cost stays
bounded) is exported beside it in the same run (issue 16): its ONNX model as
``challenger_model``, its card as ``challenger/card.json``, registered as a version of the same
registered model with the ``challenger`` alias, and written to its own ``v<version>`` folder;
neither the ``champion`` alias nor the ``champion`` link moves for it. The decision line in the
target's history names it in ``challengers``, so the platform forecasts the candles in force
for that decision with it in the shadow (:mod:`candlecast.monitoring.target_scoring`).

A re-run of the same window finds the completed run by its signature and records the same
decision again (once), registering nothing new.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from candlecast.config import PairConfig
from candlecast.modeling import history, registry
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.card import ARTIFACT, SHA256_FILE, ModelCard
from candlecast.settings import Settings
from candlecast.targets import Target

log = logging.getLogger(__name__)

#: Where the losing challenger's model and card sit in the target's run.
CHALLENGER_DIR = "challenger"


@dataclass(frozen=True)
class TargetChampion:
    """The outcome for one (target, horizon): who serves it and where."""

    target_key: str
    kind: str
    version: str
    learned: bool
    reason: str
    path: str
    reused: bool = False
    #: Not trained this time: too little history for its features (``reason`` says how much).
    skipped: bool = False
    #: The losing learned challenger exported for the shadow (its version), if any.
    challenger: str = ""


@dataclass(frozen=True)
class Exported:
    """A model ready to register: its card (no version yet) and its ONNX model."""

    card: ModelCard
    onnx_model: Any


def reuse(
    pair: PairConfig, target: Target, signature: str, settings: Settings
) -> TargetChampion | None:
    """The completed run of the same window, data, settings and code, if there is one (its
    decision recorded again, once)."""
    client = registry.client()
    runs = client.search_runs(
        [registry.experiment_id(pair.stream, settings)],
        filter_string=f"tags.`{keys.TARGETS_SIGNATURE}` = '{signature}' and "
        f"tags.`{keys.TARGET_VERSION}` != ''",
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    card = ModelCard.model_validate_json(
        Path(client.download_artifacts(run.info.run_id, ARTIFACT, tempfile.mkdtemp())).read_text()
    )
    challenger = run.data.tags.get(keys.TARGET_CHALLENGER_VERSION, "")
    folder = pair.stream.target_dir(settings.paths.models, target.key) / "champion"
    # a history begun after this version
    record_decision(pair, target, card, settings, (challenger,) if challenger else ())
    return TargetChampion(
        target.key, card.kind, str(card.version), card.kind not in target.baselines,
        card.decision, str(folder), reused=True, challenger=challenger,
    )  # fmt: skip


def record_decision(
    pair: PairConfig,
    target: Target,
    card: ModelCard,
    settings: Settings,
    challengers: tuple[str, ...] = (),
) -> None:
    """Append the gate's decision for ``card`` (its version serves from the end of its
    training window on, ``challengers`` forecast in the shadow) to the target's history,
    unless that decision is there already (a re-run of the same window)."""
    path = history.target_history_path(pair.stream, target.key, settings)
    since = datetime.fromisoformat(card.interval_end or card.holdout_end)
    decided = history.read(pair.stream, settings, path)
    if any(d.version == card.version and d.since == since for d in decided):
        return
    changed = not decided or decided[-1].version != card.version
    start = datetime.fromisoformat(card.train_start)
    history.record_now(
        pair.stream, since, str(card.version), card.kind, (start, since), "gate", changed,
        settings, challengers, path,
    )  # fmt: skip


def register(
    pair: PairConfig,
    target: Target,
    champion: Exported,
    challenger: Exported | None,
    holdout: tuple[np.ndarray, dict[str, np.ndarray]],
    signature: str,
    settings: Settings,
) -> TargetChampion:
    """Log the run (every kind's holdout scores, the cards, the ONNX models), register the
    challenger (if any) and the champion, write their served copies, then move ``champion``.
    ``holdout``: the holdout's labels and each kind's forecasts of them."""
    stream = pair.stream
    card = champion.card
    with registry.start_run(
        experiment_id=registry.experiment_id(stream, settings),
        run_name=f"{target.key}-{card.holdout_end[:16].replace(':', '')}",
        tags={
            **stream.run_tags,
            keys.RUN_ROLE: "target",
            keys.TARGET: target.name,
            keys.HORIZON: str(target.horizon),
            keys.TARGET_KEY: target.key,
            keys.TARGETS_SIGNATURE: signature,
            keys.KIND: card.kind,
            keys.GATE_DECISION: card.decision[:5000],
        },
    ) as run:
        _log_scores(target, card.baseline, *holdout)
        shadow = ""
        if challenger is not None:
            shadow = _register_version(
                pair, target, challenger, (run.info.run_id, settings), CHALLENGER_DIR
            )
            registry.set_tag(keys.TARGET_CHALLENGER_VERSION, shadow)
        version = _register_version(pair, target, champion, (run.info.run_id, settings))
        final = card.with_version(version, run.info.run_id)
        folder = stream.target_dir(settings.paths.models, target.key)
        path = _switch_champion(folder, folder / f"v{version}")
        registry.client().set_registered_model_alias(
            stream.target_model(target.key), registry.CHAMPION, version
        )
        registry.set_tag(keys.TARGET_VERSION, version)  # marks the run complete
    record_decision(pair, target, final, settings, (shadow,) if shadow else ())
    log.info("%s %s: %s v%s (%s)", stream.label, target.key, card.kind, version, card.decision)
    return TargetChampion(
        target.key, card.kind, version, card.kind not in target.baselines, card.decision,
        str(path), challenger=shadow,
    )  # fmt: skip


def _log_scores(target: Target, baseline: str, y: np.ndarray, predicted: dict[str, Any]) -> None:
    """Every kind's holdout scores, and its primary loss over the best baseline's."""
    reference = target.loss(y, predicted[baseline]).mean()
    for kind, forecast in predicted.items():
        scores = target.scores(y, forecast)
        registry.log_metrics({f"{kind}.{k}": v for k, v in scores.items()})
        registry.log_metric(
            f"{kind}.{target.primary}_ratio", float(target.loss(y, forecast).mean() / reference)
        )


def _register_version(
    pair: PairConfig,
    target: Target,
    model: Exported,
    where: tuple[str, Settings],
    under: str = "",
) -> str:
    """Log ``model`` in the active run (under ``under``: the challenger's folder), register
    it, log its versioned card and write its ``v<version>`` folder; a challenger (``under``)
    gets the ``challenger`` alias. Returns the version."""
    stream = pair.stream
    run_id, settings = where
    name = stream.target_model(target.key)
    card = model.card
    # a logged model's name cannot hold a "/": the challenger's is ``challenger_model``
    logged = f"{under}_{keys.MODEL_NAME}" if under else keys.MODEL_NAME
    info = registry.log_onnx_model(card.embed(model.onnx_model), name=logged)
    registered = registry.register_model(info.model_uri, name, tags={keys.KIND: card.kind})
    version = str(registered.version)
    final = card.with_version(version, run_id)
    registry.log_text(final.model_dump_json(indent=2), f"{under}/{ARTIFACT}" if under else ARTIFACT)
    write_version(stream.target_dir(settings.paths.models, target.key), final, model.onnx_model)
    client = registry.client()
    reason = card.decision[:5000]
    client.update_model_version(name, version, description=reason)
    if under:
        client.set_registered_model_alias(name, registry.CHALLENGER, version)
    else:
        client.set_model_version_tag(name, version, keys.CHAMPION_REASON, reason)
    return version


def write_version(folder: Path, card: ModelCard, onnx_model: Any) -> Path:
    """``<folder>/v<version>`` with model.onnx, its sha256 and card.json (switches nothing)."""
    version_dir = folder / f"v{card.version}"
    version_dir.mkdir(parents=True, exist_ok=True)
    payload = card.embed(onnx_model).SerializeToString()
    (version_dir / "model.onnx").write_bytes(payload)
    # the card is inside the ONNX file, so its hash is recorded beside it (checked on load)
    (version_dir / SHA256_FILE).write_text(hashlib.sha256(payload).hexdigest() + "\n")
    (version_dir / ARTIFACT).write_text(card.model_dump_json(indent=2))
    return version_dir


def serve_copy(folder: Path, card: ModelCard, onnx_model: Any) -> Path:
    """:func:`write_version`, then ``<folder>/champion`` a link to it."""
    return _switch_champion(folder, write_version(folder, card, onnx_model))


def _switch_champion(folder: Path, version_dir: Path) -> Path:
    """``<folder>/champion`` a link to ``version_dir``, switched in one rename (a reader sees
    the old or the new version, never half)."""
    link = folder / ".champion.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version_dir.name)
    link.replace(folder / "champion")
    return folder / "champion"
