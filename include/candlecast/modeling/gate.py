"""The promotion decision, as a pure function of scores (tested table by table).

The challenger becomes champion only if it beats both the persistence forecast and the
current champion on the challenger's chronological holdout. When no trained model beats
persistence, persistence itself is champion: the platform never serves a model it knows to be
worse than "no change". MLflow I/O around this lives in :mod:`.promotion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    PROMOTED = "promoted"  # the challenger becomes champion
    KEPT = "kept_champion"  # the current (trained) champion stays
    PERSISTENCE = "persistence"  # persistence is (or stays) champion


@dataclass(frozen=True)
class Scores:
    """Holdout scores on one metric (lower is better); ``champion`` None when there is no
    champion or it could not be scored on this holdout."""

    challenger: float
    persistence: float
    champion: float | None = None

    def shown(self, metric: str) -> str:
        parts = {"challenger": self.challenger, "persistence": self.persistence}
        if self.champion is not None:
            parts["champion"] = self.champion
        return ", ".join(f"{who} {metric}={value:.6g}" for who, value in parts.items())


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    #: A persistence version must be registered (the current champion is not persistence).
    register_baseline: bool = False


def decide(scores: Scores, metric: str, champion_is_baseline: bool = False) -> Verdict:
    """Who is champion after this challenger.

    Args:
        scores: the holdout scores.
        metric: the metric's name, for the reason.
        champion_is_baseline: the current champion is persistence.
    """
    shown = scores.shown(metric)
    beats_persistence = scores.challenger < scores.persistence
    beats_champion = scores.champion is None or scores.challenger < scores.champion
    if beats_persistence and beats_champion:
        return Verdict(Outcome.PROMOTED, f"challenger beats persistence and the champion ({shown})")
    champion_skilled = scores.champion is not None and scores.champion < scores.persistence
    if champion_skilled and not champion_is_baseline:
        return Verdict(Outcome.KEPT, f"champion kept: challenger does not beat it ({shown})")
    reason = f"no trained model beats persistence; serving persistence ({shown})"
    return Verdict(Outcome.PERSISTENCE, reason, register_baseline=not champion_is_baseline)
