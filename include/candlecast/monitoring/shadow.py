"""Shadow challengers judged on realized data: does the gate's loser beat the champion now?

The platform forecasts every candle with the champion in force and with that decision's losing
challenger (:mod:`candlecast.monitoring.scoring`, source ``shadow``). Once the candles have
closed, each shadow version is compared with the champion as served on exactly the same
realized rows, by the gate's own test (:func:`candlecast.modeling.promotion.compare`: a
one-sided test over rolling windows per gate metric, the gate's ``alpha`` and ``min_margin``).
A shadow that passes on every metric over at least ``min_forecasts`` rows is a reason to retrain
(:mod:`candlecast.monitoring.decisions`), so the gate can decide again on fresh data.

Every other configured target is judged the same way (:func:`target_shadow_skill`, issue 16):
its gate's loser is forecast in the shadow too (:mod:`candlecast.monitoring.target_scoring`)
and compared with the target's forecasts as served on the same realized rows, by that target
gate's rule (:func:`candlecast.modeling.promotion.compare_target`: the one-sided
Diebold-Mariano test on the target's primary loss, the gate's ``alpha`` and ``min_margin``).
:func:`judge` is the one judgment both share; only the rule differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.modeling.gate import Comparison, Policy
from candlecast.modeling.history import Decided, shadows_at
from candlecast.monitoring.decisions import ShadowEvidence
from candlecast.monitoring.performance import join_realized, realized_performance
from candlecast.monitoring.store import ShadowRow, TargetShadowRow
from candlecast.targets import Target

#: The gate's comparisons of a shadow's forecasts with the champion's on the same realized
#: rows: ``rule(realized, shadow, champion)``.
Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Comparison, ...]]


@dataclass(frozen=True)
class ShadowSkill:
    """A shadow challenger against the champion as served, on the same realized rows."""

    version: str
    #: The champion version(s) that served those rows.
    champions: tuple[str, ...]
    #: Realized rows both forecast.
    forecasts: int
    #: Each one's realized ``metric`` over persistence's on those rows (below 1 beats it).
    rmse_ratio: float | None
    champion_rmse_ratio: float | None
    #: The gate's comparisons of the shadow with the champion (empty below ``min_forecasts``).
    comparisons: tuple[Comparison, ...] = ()
    beats: bool = False
    #: The other target it forecasts ("": the next candle's return) and its primary score.
    target: str = ""
    metric: str = "rmse"

    @property
    def judged(self) -> bool:
        return bool(self.comparisons)

    def evidence(self) -> ShadowEvidence:
        mine = [c for c in self.comparisons if c.metric == self.metric] or list(self.comparisons)
        ratio = mine[0].score / mine[0].opponent if mine and mine[0].opponent > 0 else math.nan
        p_value = max((c.p_value for c in self.comparisons), default=math.nan)
        return ShadowEvidence(
            self.version, self.champions, self.forecasts, ratio, p_value, self.beats,
            self.target, self.metric,
        )  # fmt: skip

    def stored(self) -> ShadowRow:
        """The row the metrics table keeps (and Prometheus exports) of this comparison."""
        evidence = self.evidence()
        return ShadowRow(
            version=self.version,
            champions="/".join(self.champions),
            forecasts=self.forecasts,
            rmse_ratio=_finite(self.rmse_ratio),
            champion_rmse_ratio=_finite(self.champion_rmse_ratio),
            rmse_vs_champion=_finite(evidence.rmse_vs_champion),
            p_value=_finite(evidence.p_value),
            judged=self.judged,
            beats=self.beats,
        )

    def stored_for_target(self) -> TargetShadowRow:
        """The row the metrics table keeps of another target's shadow."""
        evidence = self.evidence()
        return TargetShadowRow(
            target=self.target,
            version=self.version,
            champions="/".join(self.champions),
            forecasts=self.forecasts,
            metric=self.metric,
            ratio=_finite(self.rmse_ratio),
            champion_ratio=_finite(self.champion_rmse_ratio),
            vs_champion=_finite(evidence.rmse_vs_champion),
            p_value=_finite(evidence.p_value),
            judged=self.judged,
            beats=self.beats,
        )

    def to_dict(self) -> dict[str, Any]:
        evidence = self.evidence()
        return {
            "target": self.target,
            "metric": self.metric,
            "version": self.version,
            "champions": list(self.champions),
            "forecasts": self.forecasts,
            "state": "judged" if self.judged else "not judged yet",
            "rmse_ratio": self.rmse_ratio,
            "champion_rmse_ratio": self.champion_rmse_ratio,
            "rmse_vs_champion": _finite(evidence.rmse_vs_champion),
            "p_value": _finite(evidence.p_value),
            "beats_champion": self.beats,
            "comparisons": [c.describe() for c in self.comparisons],
        }


def shadows_in_force(shadows: pd.DataFrame, history: Sequence[Decided]) -> pd.DataFrame:
    """The shadow forecasts whose version was a challenger of the decision in force for their
    row (by the recorded history, as the champion's rows are picked)."""
    times = shadows["feature_ts"].to_numpy(dtype=np.int64)
    keep = np.zeros(len(shadows), dtype=bool)
    for version in set(shadows["model_version"]):
        keep |= (shadows["model_version"].to_numpy() == version) & shadows_at(
            history, times, str(version)
        )
    return shadows[keep]


def shadow_skill(
    pair: PairConfig,
    shadows: pd.DataFrame,
    served: pd.DataFrame,
    returns: pd.DataFrame,
    min_forecasts: int,
) -> list[ShadowSkill]:
    """Each shadow version in ``shadows`` (logged forecasts) against ``served`` (the champion
    as served: one forecast per feature time) on the feature times both have and whose
    returns (:func:`~candlecast.monitoring.performance.realized_returns`) are known."""
    champion = join_realized(served, returns)
    found = []
    for version, rows in shadows.groupby("model_version", sort=True):
        mine = join_realized(rows, returns)
        both = mine.merge(champion, on=["feature_ts", "realized"], suffixes=("", "_champion"))
        if both.empty:
            continue
        found.append(_judged(pair, str(version), both, min_forecasts))
    return found


def _judged(pair: PairConfig, version: str, both: pd.DataFrame, minimum: int) -> ShadowSkill:
    """The shadow's skill on the joined rows; judged by the gate's test from ``minimum`` rows."""
    from candlecast.modeling.promotion import compare

    gate = pair.training.gate
    champion_rows = both.assign(predicted=both["predicted_champion"])
    own, theirs = realized_performance(both), realized_performance(champion_rows)
    policy = Policy(gate.alpha, gate.min_margin, tuple(gate.metrics))

    def rule(realized: np.ndarray, shadow: np.ndarray, champion: np.ndarray) -> Any:
        return compare(shadow - realized, champion - realized, policy, gate.windows)

    skill = ShadowSkill(
        version,
        _champions(both),
        len(both),
        own.rmse_ratio if own else None,
        theirs.rmse_ratio if theirs else None,
    )
    return judge(skill, both, rule, policy, max(minimum, gate.windows))


def judge(
    skill: ShadowSkill, both: pd.DataFrame, rule: Rule, policy: Policy, minimum: int
) -> ShadowSkill:
    """``skill`` judged on ``both`` (``realized``, the shadow's ``predicted`` and the
    champion's ``predicted_champion`` of the same rows) by the gate's ``rule``: it beats the
    champion when every comparison passes ``policy``. Below ``minimum`` rows it is not judged."""
    if len(both) < minimum:
        return skill
    comparisons = tuple(
        rule(
            both["realized"].to_numpy(dtype=np.float64),
            both["predicted"].to_numpy(dtype=np.float64),
            both["predicted_champion"].to_numpy(dtype=np.float64),
        )
    )
    beats = bool(comparisons) and all(c.passes(policy) for c in comparisons)
    return replace(skill, comparisons=comparisons, beats=beats)


def target_shadow_skill(
    pair: PairConfig,
    target: Target,
    shadows: pd.DataFrame,
    served: pd.DataFrame,
    min_forecasts: int,
) -> list[ShadowSkill]:
    """Each shadow version of ``target`` in ``shadows`` against ``served`` (the target as
    served), both joined with their outcomes (:func:`~candlecast.monitoring.target_skill.
    join_outcomes`: ``realized`` and ``persistence``), on the feature times both have, judged
    by the target gate's rule (see the module)."""
    from candlecast.modeling.promotion import compare_target

    gate = pair.training.gate
    policy = Policy(gate.alpha, gate.min_margin, (target.primary,))

    def rule(realized: np.ndarray, shadow: np.ndarray, champion: np.ndarray) -> Any:
        return (compare_target(target, realized, shadow, champion),)

    champion = served[["feature_ts", "model_version", "predicted"]]
    found = []
    for version, rows in shadows.groupby("model_version", sort=True):
        both = rows.merge(champion, on="feature_ts", suffixes=("", "_champion"))
        if both.empty:
            continue
        both = both.sort_values("feature_ts", kind="stable").reset_index(drop=True)
        skill = ShadowSkill(
            str(version),
            _champions(both),
            len(both),
            _ratio(target, both, "predicted"),
            _ratio(target, both, "predicted_champion"),
            target=target.key,
            metric=target.primary,
        )
        # the test needs more rows than the horizon its overlapping outcomes span
        found.append(judge(skill, both, rule, policy, max(min_forecasts, target.horizon + 1)))
    return found


def _champions(both: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in both["model_version_champion"]}))


def _ratio(target: Target, both: pd.DataFrame, column: str) -> float | None:
    """The primary score of ``column``'s forecasts over persistence's on the same rows."""
    y = both["realized"].to_numpy(np.float64)
    reference = target.primary_score(y, both["persistence"].to_numpy(np.float64))
    own = target.primary_score(y, both[column].to_numpy(np.float64))
    return own / reference if reference > 0 else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
