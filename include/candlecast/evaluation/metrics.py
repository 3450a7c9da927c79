"""Scores of return forecasts."""

from __future__ import annotations

from typing import Literal

import numpy as np

Metric = Literal["mae", "rmse", "directional_accuracy"]
#: Metrics where lower is better (the promotion gate compares these).
LOSSES = ("mae", "rmse")


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
