"""The return target: the log return of the close ``horizon`` candles ahead."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from candlecast.evaluation import metrics
from candlecast.targets.base import Target


class ReturnTarget(Target):
    """``log(close[t + h] / close[t])``; baselines "no change" and the training mean."""

    name: ClassVar[str] = "return"
    baselines: ClassVar[tuple[str, ...]] = ("persistence", "drift")
    primary: ClassVar[str] = "rmse"
    outputs: ClassVar[tuple[str, ...]] = ("log_return",)
    description: ClassVar[str] = "log return of the close h candles after the last close"

    def _values(self, log_close: np.ndarray) -> np.ndarray:
        return log_close[self.horizon :] - log_close[: -self.horizon]

    def loss(self, target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return (np.asarray(predicted, float) - np.asarray(target, float)) ** 2

    def scores(self, target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        return metrics.score(target, predicted)

    def answer(self, value: float, close: float, timeframe: str) -> dict[str, float]:
        return {"log_return": value, "price": close * math.exp(value)}
