"""The target interface: everything that depends on *what* is forecast.

A target over ``horizon`` candles owns
* its label (:meth:`Target.label`), computed only from candles after the feature row's close:
  the row of the candle that closes at ``t`` is labelled from the ``horizon`` candles after it;
* its baselines (names of model kinds registered for the target, the first the reference of
  every ratio), its primary loss per row (:meth:`Target.loss`, for tests of significance) and
  its scores (:meth:`Target.scores`);
* the space learned kinds fit in (:meth:`Target.to_fit_space`, with a calibration of the way
  back), and how a forecast becomes user-facing numbers (:meth:`Target.answer`).

Training rows whose label window overlaps a test window are embargoed: :attr:`Target.embargo`
rows (``horizon``) separate the last training row from the first test row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from candlecast.timeframes import timeframe_ms


class Target(ABC):
    """One forecast target at one horizon (in candles of the stream's timeframe)."""

    name: ClassVar[str]
    #: Baseline kinds scored beside every learned kind; the first is the reference.
    baselines: ClassVar[tuple[str, ...]]
    #: The loss the gate and the tests of significance compare (lower is better).
    primary: ClassVar[str]
    #: Names of the model output's columns (the ONNX output has ``[batch, len(outputs)]``).
    outputs: ClassVar[tuple[str, ...]]
    #: What the label is, in one line (model cards, reports, the API's documentation).
    description: ClassVar[str]
    #: Per learned kind, parameters for this target that replace the kind's defaults (the
    #: stream's ``training.params`` still override them).
    kind_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, horizon: int = 1) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 candle, got {horizon}")
        self.horizon = horizon

    def __repr__(self) -> str:
        return f"{type(self).__name__}(horizon={self.horizon})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> str:
        """``return_h1``: the target and horizon in names (metrics, models, task ids)."""
        return f"{self.name}_h{self.horizon}"

    @property
    def embargo(self) -> int:
        """Rows dropped between training and test rows: a training row's label reaches
        ``horizon`` candles past it, so the last ``horizon`` rows before a test window would
        otherwise be labelled with candles of that window."""
        return self.horizon

    def label(self, candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
        """``event_timestamp`` (the close of the row's candle) and ``target``, for every
        candle followed by ``horizon`` consecutive candles (none across a gap).

        ``candles``: validated candles (``ts, open, high, low, close``), sorted by ``ts``.
        """
        ts = candles["ts"].to_numpy(dtype=np.int64)
        h = self.horizon
        if len(ts) <= h:
            return pd.DataFrame(
                {
                    "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                    "target": pd.Series(dtype=float),
                }
            )
        step = timeframe_ms(timeframe)
        consecutive = ts[h:] - ts[:-h] == h * step
        # every candle in between must be there too: with no duplicates, a span of h steps
        # over h rows means no gap inside
        values = self._values(np.log(candles["close"].to_numpy(dtype=float)))
        close = pd.to_datetime(ts[:-h] + step, unit="ms", utc=True).astype("datetime64[us, UTC]")
        frame = pd.DataFrame({"event_timestamp": close, "target": values})
        return frame[consecutive & np.isfinite(values)].reset_index(drop=True)

    def primary_score(self, target: np.ndarray, predicted: np.ndarray) -> float:
        """The primary score of these forecasts (``rmse`` of returns, mean ``qlike``)."""
        return self.scores(target, predicted)[self.primary]

    def extra_features(self, timeframe: str) -> list[str]:
        """Feature columns learned kinds read for this target besides the stream's features
        (none for returns)."""
        return []

    @abstractmethod
    def _values(self, log_close: np.ndarray) -> np.ndarray:
        """The label of rows ``0 .. n - horizon - 1`` from the log closes of ``n`` candles."""

    @abstractmethod
    def loss(self, target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """The primary loss of each row (lower is better)."""

    @abstractmethod
    def scores(self, target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        """Every score of these forecasts, the primary loss among them."""

    def base(self, x: np.ndarray, features: tuple[str, ...]) -> np.ndarray | None:
        """A per-row scale learned kinds forecast relative to, read from their inputs
        ``x`` (columns ``features``); None: they forecast the label itself."""
        return None

    def to_fit_space(self, target: np.ndarray, base: np.ndarray | None) -> np.ndarray:
        """What learned kinds fit (the label itself unless the target says otherwise)."""
        return target

    def calibrate(self, fitted: np.ndarray, target: np.ndarray, base: np.ndarray | None) -> float:
        """The correction :meth:`from_fit_space` applies, estimated on rows a model did not
        fit (``fitted``: its fit-space forecasts of them, ``target``: their labels)."""
        return 0.0

    def from_fit_space(
        self, fitted: np.ndarray, correction: float, base: np.ndarray | None
    ) -> np.ndarray:
        """Forecasts in the target's own units from a learned kind's outputs."""
        return fitted

    @property
    def transforms(self) -> bool:
        """Learned kinds fit in another space than the target's own."""
        return type(self).to_fit_space is not Target.to_fit_space

    def onnx_head(self, model: Any, correction: float, features: tuple[str, ...]) -> Any:
        """A learned kind's ONNX model with :meth:`from_fit_space` appended (identity here)."""
        return model

    @abstractmethod
    def answer(self, value: float, close: float, timeframe: str) -> dict[str, float]:
        """A forecast ``value`` for the candle that closed at price ``close`` as the numbers a
        user reads (prices, volatility)."""
