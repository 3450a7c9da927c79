"""A model kind fitted for a target: the kind learns in the target's fit space, and the
target's way back (with its calibration) turns its outputs into forecasts.

Baselines forecast in the target's own units and are used as they are. A learned kind on a
target that transforms its label (volatility: log variance) is calibrated on the last
:data:`CALIBRATION_FRACTION` of its training rows, fitted without them (and without the
``embargo`` rows before them, whose labels reach into them), then refitted on all rows with
that calibration kept. The ONNX model carries the way back (:meth:`Target.onnx_head`), so the
served output is in the target's units too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from candlecast.modeling.datasets import kind_features
from candlecast.modeling.kinds.base import KindParams, ModelKind
from candlecast.targets import Target

#: Share of the training rows that calibrates a transformed target's way back.
CALIBRATION_FRACTION = 0.2


@dataclass(eq=False)
class TargetModel:
    """A kind and the target it forecasts, fitted or not."""

    kind: ModelKind
    target: Target
    correction: float = 0.0

    @classmethod
    def create(
        cls, kind: type[ModelKind], target: Target, timeframe: str, params: KindParams | None
    ) -> TargetModel:
        return cls(kind.for_target(target, timeframe, params, kind_features(kind)), target)

    @property
    def spec(self) -> Any:
        return self.kind.spec

    @property
    def window(self) -> int:
        return self.kind.window

    @property
    def transformed(self) -> bool:
        return not self.kind.baseline and self.target.transforms

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        if not self.transformed:
            self.kind.fit(x, y)
            return
        base = self.target.base(x, self.kind.spec.features)
        fit_space = self.target.to_fit_space(y, base)
        cut = round(len(x) * (1 - CALIBRATION_FRACTION))
        inner = cut - self.target.embargo
        if inner > 0 and cut < len(x):
            self.kind.fit(x[:inner], fit_space[:inner])
            self.correction = self.target.calibrate(
                self.kind.predict(x[cut:]), y[cut:], None if base is None else base[cut:]
            )
        self.kind.fit(x, fit_space)

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.kind.predict(x), np.float64)
        if not self.transformed:
            return raw
        base = self.target.base(x, self.kind.spec.features)
        return self.target.from_fit_space(raw, self.correction, base)

    def to_onnx(self) -> Any:
        model = self.kind.to_onnx()
        if not self.transformed:
            return model
        return self.target.onnx_head(model, self.correction, self.kind.spec.features)
