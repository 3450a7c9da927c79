"""Pure decisions of monitoring: is a pair's champion out of date, and may we ask again?

Numbers in, a decision out; no I/O, so every rule is tested table by table. A retrain is
wanted when any trigger fires (a drifted share of input features at or above
``drift_share``, served forecasts drifted from the champion's holdout forecasts, realized RMSE
above ``max_rmse_ratio`` times persistence's over at least ``min_forecasts`` forecasts, the
realized 90% interval coverage of any (target, horizon) below ``min_coverage`` over at least
``min_forecasts`` forecasts, a shadow challenger beating the champion on at least
``min_forecasts`` realized forecasts by the gate's significance rules, for the next candle's
return or any other target), and requested only when no drift-triggered request was made
within the cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from candlecast.config import MonitoringSection


@dataclass(frozen=True)
class Thresholds:
    """A pair's monitoring thresholds (its config's ``monitoring`` section)."""

    drift_share: float = 0.5
    feature_threshold: float = 0.5
    max_rmse_ratio: float = 1.05
    min_forecasts: int = 100
    cooldown: timedelta = timedelta(hours=24)
    min_coverage: float = 0.8

    @classmethod
    def of(cls, section: MonitoringSection) -> Thresholds:
        return cls(
            drift_share=section.drift_share,
            feature_threshold=section.feature_threshold,
            max_rmse_ratio=section.max_rmse_ratio,
            min_forecasts=section.min_forecasts,
            cooldown=timedelta(hours=section.retrain_cooldown_hours),
            min_coverage=section.min_coverage,
        )


@dataclass(frozen=True)
class ShadowEvidence:
    """A shadow challenger against the champion as served, on the same realized forecasts."""

    version: str
    champions: tuple[str, ...]
    forecasts: int
    #: The shadow's realized RMSE (``metric``) over the champion's (below 1: it is better).
    rmse_vs_champion: float
    #: The gate's one-sided test, the largest p-value over its metrics.
    p_value: float
    #: It passed the gate's test and margin on every metric.
    beats: bool
    #: The other target it forecasts ("": the next candle's return), and the score of
    #: ``rmse_vs_champion`` (that target's primary score).
    target: str = ""
    metric: str = "rmse"


@dataclass(frozen=True)
class Evidence:
    """What one check measured; None where it could not be measured."""

    drift_share: float | None = None
    drifted_features: tuple[str, ...] = ()
    features: int = 0
    prediction_drifted: bool | None = None
    rmse_ratio: float | None = None
    forecasts: int = 0
    #: Per (target, horizon) key: realized 90% interval coverage and how many forecasts.
    coverage: tuple[tuple[str, float, int], ...] = ()
    #: Shadow challengers compared with the champion (:mod:`candlecast.monitoring.shadow`).
    shadows: tuple[ShadowEvidence, ...] = ()


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to request a retrain now, and why (or why not)."""

    retrain: bool
    reason: str
    triggers: tuple[str, ...] = field(default_factory=tuple)
    rate_limited: bool = False


def triggers(evidence: Evidence, limits: Thresholds) -> list[str]:
    """The reasons, one sentence each, that the champion is out of date (empty: it is not)."""
    found = []
    share = evidence.drift_share
    if share is not None and share >= limits.drift_share:
        names = ", ".join(evidence.drifted_features[:10])
        found.append(
            f"data drift: {len(evidence.drifted_features)} of {evidence.features} input "
            f"features drifted (share {share:.2f} >= {limits.drift_share:.2f}): {names}"
        )
    if evidence.prediction_drifted:
        found.append("prediction drift: served forecasts drifted from the holdout forecasts")
    ratio = evidence.rmse_ratio
    judged = ratio is not None and evidence.forecasts >= limits.min_forecasts
    if judged and ratio is not None and ratio > limits.max_rmse_ratio:
        found.append(
            f"decay: realized RMSE {ratio:.3f}x persistence's over {evidence.forecasts} "
            f"forecasts (> {limits.max_rmse_ratio:.3f})"
        )
    for key, rate, count in evidence.coverage:
        if count >= limits.min_forecasts and rate < limits.min_coverage:
            found.append(
                f"coverage collapse: {key} 90% intervals held {rate:.1%} of {count} realized "
                f"forecasts (< {limits.min_coverage:.0%})"
            )
    found.extend(_shadow_reasons(evidence, limits))
    return found


def _shadow_reasons(evidence: Evidence, limits: Thresholds) -> list[str]:
    """One sentence per shadow challenger that beat the champion on enough realized rows."""
    return [
        f"shadow challenger {s.target + ' ' if s.target else ''}v{s.version} beats champion "
        f"v{'/v'.join(s.champions)} on {s.forecasts} realized candles "
        f"({'RMSE' if s.metric == 'rmse' else s.metric} {s.rmse_vs_champion:.3f}x the "
        f"champion's, p={s.p_value:.3g})"
        for s in evidence.shadows
        if s.beats and s.forecasts >= limits.min_forecasts
    ]


def decide(
    evidence: Evidence, limits: Thresholds, last_request: datetime | None, now: datetime
) -> RetrainDecision:
    """Request a retrain when a trigger fires and the last drift-triggered request (if any)
    is at least ``limits.cooldown`` old."""
    found = tuple(triggers(evidence, limits))
    if not found:
        return RetrainDecision(False, "no drift or decay beyond the thresholds")
    if last_request is not None and now - last_request < limits.cooldown:
        allowed = last_request + limits.cooldown
        return RetrainDecision(
            False,
            f"rate limited: a retrain was requested at {last_request.isoformat()}; the next is "
            f"allowed from {allowed.isoformat()} ({'; '.join(found)})",
            found,
            rate_limited=True,
        )
    return RetrainDecision(True, "; ".join(found), found)
