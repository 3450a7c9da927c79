"""Shadow challengers judged on realized data: does the gate's loser beat the champion now?

The platform forecasts every candle with the champion in force and with that decision's losing
challenger (:mod:`candlecast.monitoring.scoring`, source ``shadow``). Once the candles have
closed, each shadow version is compared with the champion as served on exactly the same
realized rows, by the gate's own test (:func:`candlecast.modeling.promotion.compare`: a
one-sided test over rolling windows per gate metric, the gate's ``alpha`` and ``min_margin``).
A shadow that passes on every metric over at least ``min_forecasts`` rows is a reason to retrain
(:mod:`candlecast.monitoring.decisions`), so the gate can decide again on fresh data.

Only the next candle's return (horizon 1, the main target) is forecast in the shadow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.modeling.gate import Comparison, Policy
from candlecast.modeling.history import Decided, shadows_at
from candlecast.monitoring.decisions import ShadowEvidence
from candlecast.monitoring.performance import join_realized, realized_performance
from candlecast.monitoring.store import ShadowRow


@dataclass(frozen=True)
class ShadowSkill:
    """A shadow challenger against the champion as served, on the same realized rows."""

    version: str
    #: The champion version(s) that served those rows.
    champions: tuple[str, ...]
    #: Realized rows both forecast.
    forecasts: int
    #: Each one's realized RMSE over persistence's on those rows (below 1 beats it).
    rmse_ratio: float | None
    champion_rmse_ratio: float | None
    #: The gate's comparisons of the shadow with the champion (empty below ``min_forecasts``).
    comparisons: tuple[Comparison, ...] = ()
    beats: bool = False

    @property
    def judged(self) -> bool:
        return bool(self.comparisons)

    def evidence(self) -> ShadowEvidence:
        rmse = [c for c in self.comparisons if c.metric == "rmse"] or list(self.comparisons)
        ratio = rmse[0].score / rmse[0].opponent if rmse and rmse[0].opponent > 0 else math.nan
        p_value = max((c.p_value for c in self.comparisons), default=math.nan)
        return ShadowEvidence(
            self.version, self.champions, self.forecasts, ratio, p_value, self.beats
        )

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

    def to_dict(self) -> dict[str, Any]:
        evidence = self.evidence()
        return {
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
    champions = tuple(sorted({str(v) for v in both["model_version_champion"]}))
    skill = ShadowSkill(
        version,
        champions,
        len(both),
        own.rmse_ratio if own else None,
        theirs.rmse_ratio if theirs else None,
    )
    if len(both) < max(minimum, gate.windows):
        return skill
    realized = both["realized"].to_numpy(dtype=np.float64)
    errors = both["predicted"].to_numpy(dtype=np.float64) - realized
    opponent = both["predicted_champion"].to_numpy(dtype=np.float64) - realized
    policy = Policy(gate.alpha, gate.min_margin, tuple(gate.metrics))
    comparisons = compare(errors, opponent, policy, gate.windows)
    beats = all(c.passes(policy) for c in comparisons)
    return replace(skill, comparisons=comparisons, beats=beats)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
