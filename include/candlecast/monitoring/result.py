"""What one monitoring check found: the champion as monitoring sees it and the check's result
(:mod:`candlecast.monitoring.check` measures them; its report and the metrics table show them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from candlecast.data.liquidity import Liquidity
from candlecast.modeling.history import Decided
from candlecast.monitoring import decisions
from candlecast.monitoring.aci import AciReport
from candlecast.monitoring.drift import DriftResult, FeatureDrift
from candlecast.monitoring.performance import Realized
from candlecast.monitoring.shadow import ShadowSkill
from candlecast.monitoring.targets import TargetRealized


@dataclass(frozen=True)
class Champion:
    """What monitoring needs of a champion: its inputs, training window, holdout forecasts."""

    version: str
    run_id: str
    kind: str
    features: list[str]
    train_start: datetime
    train_end: datetime
    holdout_predicted: np.ndarray | None  # None: a constant baseline forecasts nothing to drift
    #: The stream's recorded decisions (which version was in force when).
    history: tuple[Decided, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """Everything one check measured and decided."""

    stream: str
    as_of: datetime
    champion_version: str | None
    reference: tuple[datetime, datetime]
    current: tuple[datetime, datetime]
    drift: DriftResult
    prediction: FeatureDrift | None
    realized: Realized | None
    forecasts_logged: int
    feature_staleness_s: float | None
    decision: decisions.RetrainDecision
    check_id: int = 0
    report_path: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Each served target's realized figures over the current window.
    targets: tuple[TargetRealized, ...] = ()
    #: How liquid the current window's candles are (a thin market is warned about).
    liquidity: Liquidity | None = None
    #: Realized skill of each model version's forecasts in the window.
    realized_by_version: dict[str, Realized] = field(default_factory=dict)
    #: Whose forecasts were judged: ``platform`` (every candle, by the model in force for it)
    #: or ``service`` (forecasts clients asked for), None when none were.
    realized_source: str | None = None
    #: Realized figures count once at least this many forecasts were judged.
    min_forecasts: int = 0
    #: The intervals' online ACI state per (target, level), the next candle's return included.
    aci: tuple[AciReport, ...] = ()
    #: Shadow challengers against the champion as served on the same realized rows.
    shadows: tuple[ShadowSkill, ...] = ()

    @property
    def realized_state(self) -> str:
        """``judged``, or ``not judged yet`` with how many of the forecasts needed."""
        count = self.realized.forecasts if self.realized else 0
        if count >= self.min_forecasts and self.realized is not None:
            return "judged"
        return f"not judged yet ({count} of {self.min_forecasts} forecasts realized)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "as_of": self.as_of.isoformat(),
            "champion_version": self.champion_version,
            "reference": [t.isoformat() for t in self.reference],
            "current": [t.isoformat() for t in self.current],
            **self.drift.to_dict(),
            "prediction_drift": asdict(self.prediction) if self.prediction else None,
            "realized": self.realized.to_dict() if self.realized else None,
            "realized_state": self.realized_state,
            "realized_source": self.realized_source,
            "realized_by_version": {v: r.to_dict() for v, r in self.realized_by_version.items()},
            "forecasts_logged": self.forecasts_logged,
            "feature_staleness_s": self.feature_staleness_s,
            "retrain": self.decision.retrain,
            "rate_limited": self.decision.rate_limited,
            "reason": self.decision.reason,
            "check_id": self.check_id,
            "report_path": self.report_path,
            "targets": [t.to_dict() for t in self.targets],
            "aci": [asdict(r) | {"level_in_use": 1 - r.alpha} for r in self.aci],
            "liquidity": self.liquidity.to_dict() if self.liquidity else None,
            "shadows": [s.to_dict() for s in self.shadows],
        }
