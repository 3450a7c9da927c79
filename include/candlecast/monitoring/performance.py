"""Realized performance: served forecasts joined with what the market then did.

A forecast made from the features of candle ``t`` (``feature_ts``: its close) is for the log
return of the next candle. Once that candle has closed, the forecast log
(:mod:`candlecast.serving.forecast_log`) is joined with the realized return on the feature
time, and the champion is scored against persistence (the zero forecast) on exactly those
rows: MAE, RMSE and their ratios to persistence, directional accuracy beside the majority
direction's rate (persistence calls no direction), and the coverage of the served interval.

A forecast served many times (every request between two candles) counts once per model version
and feature time: skill is judged per forecast, not per request.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from candlecast.evaluation.metrics import (
    directional_accuracy,
    interval_coverage,
    mae,
    persistence_ratios,
    rmse,
)
from candlecast.features.engineering import next_return
from candlecast.timeframes import ms_to_iso


@dataclass(frozen=True)
class Realized:
    """Scores of the forecasts whose target candle has closed."""

    forecasts: int
    mae: float
    rmse: float
    rmse_ratio: float  # to persistence: below 1 beats it
    mae_ratio: float
    directional_accuracy: float  # on rows with a direction on both sides
    majority_rate: float  # always calling the commoner direction scores this
    coverage: float | None  # share of realized returns inside the served interval
    first_feature_ts: int
    last_feature_ts: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures; times as ISO-8601 like every other time in the answers."""
        values = asdict(self)
        for key in ("first_feature_ts", "last_feature_ts"):
            values[key] = ms_to_iso(values[key])
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def realized_returns(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``feature_ts`` (unix ms close of candle t) and ``realized`` (log return of t+1)."""
    target = next_return(candles, timeframe)
    epoch = pd.Timestamp(0, tz="UTC")
    ms = (target["event_timestamp"] - epoch) // pd.Timedelta(milliseconds=1)
    return pd.DataFrame({"feature_ts": ms.astype("int64"), "realized": target["target"]})


def distinct_forecasts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """One row per (model version, feature time): the first served."""
    ordered = forecasts.sort_values(["served_at", "feature_ts"], kind="stable")
    return ordered.drop_duplicates(["model_version", "feature_ts"]).reset_index(drop=True)


def join_realized(forecasts: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """Distinct forecasts whose target candle has closed, with its ``realized`` return."""
    distinct = distinct_forecasts(forecasts)
    joined = distinct.merge(returns, on="feature_ts", how="inner")
    return joined.sort_values("feature_ts", kind="stable").reset_index(drop=True)


def realized_performance(joined: pd.DataFrame) -> Realized | None:
    """Scores of joined forecasts (:func:`join_realized`); None with no row or no move."""
    if joined.empty:
        return None
    target = joined["realized"].to_numpy(dtype=np.float64)
    predicted = joined["predicted"].to_numpy(dtype=np.float64)
    try:
        ratios = persistence_ratios(target, predicted)
    except ValueError:  # every realized return 0: nothing to be judged on
        return None
    direction = directional_accuracy(target, predicted)
    return Realized(
        forecasts=len(joined),
        mae=mae(target, predicted),
        rmse=rmse(target, predicted),
        rmse_ratio=ratios.rmse,
        mae_ratio=ratios.mae,
        directional_accuracy=direction.accuracy,
        majority_rate=direction.majority_rate,
        coverage=_coverage(joined, target),
        first_feature_ts=int(joined["feature_ts"].iloc[0]),
        last_feature_ts=int(joined["feature_ts"].iloc[-1]),
    )


def _coverage(joined: pd.DataFrame, target: np.ndarray) -> float | None:
    if not {"lower", "upper"} <= set(joined.columns):
        return None
    has = joined["lower"].notna().to_numpy() & joined["upper"].notna().to_numpy()
    if not has.any():
        return None
    lower = joined["lower"].to_numpy(dtype=np.float64)[has]
    upper = joined["upper"].to_numpy(dtype=np.float64)[has]
    return interval_coverage(target[has], lower, upper).rate
