"""The promotion decision, as a pure function of evidence (tested table by table).

A challenger becomes champion only if it beats persistence and the current champion on every
configured metric, each by a significant margin: a one-sided test over rolling holdout
windows below ``alpha`` and a relative improvement of at least ``min_margin``. A champion is
judged only on data after the end of its own training data; where there is none, it is not
re-scored at all and the challenger only has to beat persistence (the reason says so). A
challenger whose data ends before the champion's never replaces it (an out-of-order run, such
as a backfill of an earlier interval). When nothing has shown an edge, persistence is
champion. MLflow I/O around this lives in :mod:`.promotion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    PROMOTED = "promoted"  # the challenger becomes champion
    KEPT = "kept_champion"  # the current (trained) champion stays
    PERSISTENCE = "persistence"  # persistence is (or stays) champion: no demonstrated edge


class Champion(StrEnum):
    NONE = "none"
    BASELINE = "baseline"  # persistence
    TRAINED = "trained"


@dataclass(frozen=True)
class Policy:
    """How much evidence a promotion needs."""

    alpha: float = 0.05
    min_margin: float = 0.001
    metrics: tuple[str, ...] = ("rmse", "mae")


@dataclass(frozen=True)
class Comparison:
    """A forecaster against an opponent on one metric over the same rows (lower is better)."""

    metric: str
    score: float
    opponent: float
    p_value: float  # one-sided: the forecaster's loss is lower
    rows: int

    @property
    def margin(self) -> float:
        """Relative improvement over the opponent (0.01: 1% lower)."""
        return 1.0 - self.score / self.opponent if self.opponent > 0 else 0.0

    def passes(self, policy: Policy) -> bool:
        return self.p_value < policy.alpha and self.margin >= policy.min_margin

    def describe(self) -> str:
        return (
            f"{self.metric} {self.score:.6g} vs {self.opponent:.6g} "
            f"({self.margin:+.2%}, p={self.p_value:.3g}, {self.rows} rows)"
        )


@dataclass(frozen=True)
class Evidence:
    """What the gate sees. ``*_vs_champion`` and ``champion_vs_persistence`` are None when the
    champion has no data after its training end in this holdout (it is not re-scored)."""

    challenger_vs_persistence: tuple[Comparison, ...]
    champion: Champion = Champion.NONE
    challenger_vs_champion: tuple[Comparison, ...] | None = None
    champion_vs_persistence: tuple[Comparison, ...] | None = None
    champion_trained_on_newer_data: bool = False


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    #: A persistence version must be registered (there is no persistence champion yet).
    register_baseline: bool = False


def _all_pass(comparisons: tuple[Comparison, ...] | None, policy: Policy) -> bool:
    return comparisons is not None and all(c.passes(policy) for c in comparisons)


def _shown(comparisons: tuple[Comparison, ...] | None) -> str:
    return "; ".join(c.describe() for c in comparisons or ())


def decide(evidence: Evidence, policy: Policy) -> Verdict:
    """Who is champion after this challenger (see the module docstring for the rules)."""
    trained = evidence.champion is Champion.TRAINED
    if evidence.champion is not Champion.NONE and evidence.champion_trained_on_newer_data:
        return Verdict(
            Outcome.KEPT,
            "champion kept: it was trained on newer data than this challenger's interval "
            "(an out-of-order run is recorded, never promoted)",
        )
    versus_persistence = _shown(evidence.challenger_vs_persistence)
    if _all_pass(evidence.challenger_vs_persistence, policy):
        if not trained:
            return Verdict(Outcome.PROMOTED, f"challenger beats persistence: {versus_persistence}")
        if evidence.challenger_vs_champion is None:
            return Verdict(
                Outcome.PROMOTED,
                "challenger beats persistence; the champion has no data after its training "
                f"end to be scored on, so it was not compared: {versus_persistence}",
            )
        if _all_pass(evidence.challenger_vs_champion, policy):
            return Verdict(
                Outcome.PROMOTED,
                f"challenger beats persistence ({versus_persistence}) and the champion "
                f"({_shown(evidence.challenger_vs_champion)})",
            )
    return _without_promotion(evidence, policy, versus_persistence)


def _without_promotion(evidence: Evidence, policy: Policy, versus_persistence: str) -> Verdict:
    """No promotion: the champion stays unless nothing has shown an edge."""
    challenger_edge = _all_pass(evidence.challenger_vs_persistence, policy)
    if challenger_edge:
        why = f"challenger beats persistence ({versus_persistence}) but not the champion"
        why += f" ({_shown(evidence.challenger_vs_champion)})"
    else:
        why = f"challenger shows no significant edge ({versus_persistence})"
    if evidence.champion is Champion.TRAINED:
        judged = evidence.champion_vs_persistence
        if judged is None:
            return Verdict(Outcome.KEPT, f"champion kept (no newer data to re-score it); {why}")
        if _all_pass(judged, policy) or challenger_edge:
            return Verdict(Outcome.KEPT, f"champion kept ({_shown(judged)}); {why}")
        why += f"; the champion no longer beats persistence ({_shown(judged)})"
    return Verdict(
        Outcome.PERSISTENCE,
        f"no demonstrated edge, serving persistence: {why}",
        register_baseline=evidence.champion is not Champion.BASELINE,
    )


@dataclass(frozen=True)
class TargetVerdict:
    """Who serves one (target, horizon): a baseline or a learned kind, and why."""

    champion: str
    learned: bool
    reason: str


def decide_target(
    baselines: dict[str, float], challengers: dict[str, Comparison], policy: Policy
) -> TargetVerdict:
    """The champion of a target other than the next candle's return: the best baseline (by
    the target's primary loss on the holdout) unless a learned kind beats *that* baseline
    significantly and by the margin; of several that do, the one with the lowest loss.

    Args:
        baselines: each baseline kind's primary loss on the holdout.
        challengers: each learned kind's comparison with the best baseline.

    Raises:
        ValueError: no baseline.
    """
    if not baselines:
        raise ValueError("a target needs at least one baseline")
    best = min(baselines, key=lambda name: baselines[name])
    passing = {name: c for name, c in challengers.items() if c.passes(policy)}
    if passing:
        winner = min(passing, key=lambda name: passing[name].score)
        return TargetVerdict(
            winner, True, f"{winner} beats the best baseline {best}: {passing[winner].describe()}"
        )
    shown = "; ".join(f"{name}: {c.describe()}" for name, c in challengers.items())
    why = f" (no learned kind beat it significantly: {shown})" if shown else ""
    return TargetVerdict(best, False, f"serving the best baseline, {best}{why}")
