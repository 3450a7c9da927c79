"""Forecasting models and how they are scored.

Models predict the next candle's log return from the feature row of the candle that just
closed. The persistence forecast ("no change", a return of 0) is the baseline every model
must beat before it is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import LightGBMParams


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def model_inputs(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The model input matrix: float32 values (what the ONNX model receives), held as float64
    for LightGBM, so native and ONNX forecasts see identical numbers."""
    return frame[features].to_numpy(dtype=np.float32).astype(np.float64)


def chronological_split(frame: pd.DataFrame, holdout_fraction: float) -> Split:
    """Oldest rows train, the newest ``holdout_fraction`` are held out; no shuffling."""
    ordered = frame.sort_values("event_timestamp").reset_index(drop=True)
    cut = round(len(ordered) * (1 - holdout_fraction))
    if cut < 1 or cut >= len(ordered):
        raise ValueError(f"cannot split {len(ordered)} rows with holdout {holdout_fraction}")
    return Split(ordered.iloc[:cut], ordered.iloc[cut:])


def score(target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and directional accuracy of return forecasts.

    Directional accuracy counts forecasts whose sign equals the realised sign; a forecast of
    exactly 0 (persistence) never has a direction, so it scores the share of flat candles.
    """
    error = predicted - target
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "directional_accuracy": float(np.mean(np.sign(predicted) == np.sign(target))),
    }


def fit_lightgbm(train: pd.DataFrame, features: list[str], params: LightGBMParams) -> Any:
    """Fit a LightGBM regressor on ``train[features]`` -> ``train.target``."""
    import lightgbm as lgb

    model = lgb.LGBMRegressor(
        **params.model_dump(),
        subsample_freq=1,
        random_state=42,
        deterministic=True,
        force_row_wise=True,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(model_inputs(train, features), train["target"].to_numpy())
    return model
