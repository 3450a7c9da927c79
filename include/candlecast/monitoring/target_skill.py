"""Realized skill of every other target's logged forecasts: per model version, and as served.

The platform logs each target's forecast of every candle by the version in force for it
(:mod:`candlecast.monitoring.target_scoring`). Once a row's horizon has passed its outcome is
known: this module joins the logged forecasts with the outcomes realized in a check's window
and scores them with the target's own scores, the gate's (:meth:`~candlecast.targets.base.
Target.scores`), with the ratio of the primary score to persistence on the same rows ("no
change": a return of 0, or the last ``horizon`` candles' realized variance), directional
accuracy beside the majority rate for returns, and the logged 90% interval's coverage.

The figures are given per model version (every version's rows realized in the window) and for
the stream as served: each row by the version in force for it in the target's decision history,
across champion changes. Below ``min_forecasts`` realized rows a figure is "not judged yet".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from candlecast.evaluation.metrics import directional_accuracy
from candlecast.modeling import history
from candlecast.targets import Target
from candlecast.targets.volatility import VARIANCE_FLOOR

#: Outcome columns :func:`join_outcomes` reads from a labelled target frame.
REALIZED, PERSISTENCE = "realized", "persistence"


@dataclass(frozen=True)
class Skill:
    """Realized figures of one set of logged forecasts."""

    forecasts: int
    state: str
    #: The target's scores (the gate's), e.g. ``qlike`` or ``rmse``, ``mae``.
    scores: dict[str, float] = field(default_factory=dict)
    #: The primary score, persistence's on the same rows, and their ratio (lower is better).
    score: float | None = None
    persistence: float | None = None
    ratio: float | None = None
    #: Returns: the share of logged 90% intervals holding the outcome, and the direction.
    coverage_90: float | None = None
    directional_accuracy: float | None = None
    majority_rate: float | None = None


def outcomes(frame: pd.DataFrame, target: Target, step: int) -> pd.DataFrame:
    """``feature_ts`` (the row's close), the realized label and persistence's forecast of
    each labelled row of :func:`~candlecast.modeling.target_evaluation.target_frame`."""
    if target.name == "volatility":
        reference = np.maximum(frame[f"rv_{target.horizon}"].to_numpy(np.float64), VARIANCE_FLOOR)
    else:
        reference = np.zeros(len(frame))
    return pd.DataFrame(
        {
            "feature_ts": frame["candle_ts"].to_numpy(np.int64) + step,
            REALIZED: frame["target"].to_numpy(np.float64),
            PERSISTENCE: reference,
        }
    )


def join_outcomes(logged: pd.DataFrame, realized: pd.DataFrame) -> pd.DataFrame:
    """The logged forecasts whose outcome is in ``realized`` (:func:`outcomes`), oldest first."""
    joined = logged.merge(realized, on="feature_ts", how="inner")
    return joined.sort_values(["feature_ts", "model_version"]).reset_index(drop=True)


def as_served(joined: pd.DataFrame, decided: Sequence[history.Decided]) -> pd.DataFrame:
    """The rows forecast by the version in force for them (one per feature time)."""
    times = joined["feature_ts"].to_numpy(np.int64)
    in_force = history.versions_at(decided, times) if decided else np.full(len(times), "")
    return joined[joined["model_version"].to_numpy() == in_force].reset_index(drop=True)


def skill(target: Target, rows: pd.DataFrame, min_forecasts: int) -> Skill:
    """The realized figures of ``rows`` (joined forecasts); ``not judged yet`` below
    ``min_forecasts`` rows (the figures are still given, for what they are worth)."""
    count = len(rows)
    state = (
        "judged"
        if count >= max(min_forecasts, 1)
        else f"not judged yet ({count} of {min_forecasts} forecasts realized)"
    )
    if not count:
        return Skill(0, state)
    y = rows[REALIZED].to_numpy(np.float64)
    predicted = rows["predicted"].to_numpy(np.float64)
    score = target.primary_score(y, predicted)
    persistence = target.primary_score(y, rows[PERSISTENCE].to_numpy(np.float64))
    found = Skill(
        forecasts=count,
        state=state,
        scores=target.scores(y, predicted),
        score=score,
        persistence=persistence,
        ratio=score / persistence if persistence > 0 else None,
    )
    if target.name != "return":
        return found
    direction = directional_accuracy(y, predicted)
    bounded = rows["lower"].notna().to_numpy() & rows["upper"].notna().to_numpy()
    covered = (rows["lower"].to_numpy() <= y) & (y <= rows["upper"].to_numpy())
    return replace(
        found,
        coverage_90=float(covered[bounded].mean()) if bounded.any() else None,
        directional_accuracy=_finite(direction.accuracy),
        majority_rate=_finite(direction.majority_rate),
    )


def by_version(target: Target, joined: pd.DataFrame, min_forecasts: int) -> dict[str, Skill]:
    """Each model version's realized figures on its own rows."""
    return {
        str(version): skill(target, rows, min_forecasts)
        for version, rows in joined.groupby("model_version", sort=True)
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
