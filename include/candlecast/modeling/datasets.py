"""The rows a training run fits and scores on, for kinds that read one row or a window.

A :class:`TrainingSet` orders one stream's point-in-time rows, keeps those that every kind of
the run can read (a full window of consecutive candles behind them) and splits them
chronologically. The holdout is logged with the rows before it (``holdout`` = False), so a
kind with a window can be scored on every holdout row later (a champion re-scored on a newer
challenger's holdout, the ONNX parity check) exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from candlecast.errors import NotEnoughHistoryError
from candlecast.features.engineering import FEATURE_COLUMNS, MULTI_TIMEFRAME_COLUMNS
from candlecast.modeling.kinds.base import ModelKind, window_inputs

#: Rows kept before the holdout in the logged artifact: the longest window a later champion
#: may need to score the first holdout row.
CONTEXT_ROWS = 256


def kind_features(kind: type[ModelKind]) -> list[str]:
    """The feature columns a kind reads: its own timeframe's, or all three timeframes'."""
    return MULTI_TIMEFRAME_COLUMNS if kind.multi_timeframe else FEATURE_COLUMNS


@dataclass(frozen=True)
class TrainingSet:
    """Ordered rows (``frame``) and the positions that train and that are held out."""

    frame: pd.DataFrame
    features: tuple[str, ...]
    step_ms: int
    train: np.ndarray
    holdout: np.ndarray
    #: Window inputs already built, by (window, features): a kind reads them several times.
    _built: dict[tuple[int, tuple[str, ...]], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        features: list[str] | tuple[str, ...],
        holdout_fraction: float,
        window: int,
        step_ms: int,
    ) -> TrainingSet:
        """Rows usable by a ``window``-row kind, oldest ``1 - holdout_fraction`` training.

        Raises:
            NotEnoughHistoryError: too few usable rows for both parts.
        """
        ordered = frame.sort_values("event_timestamp").reset_index(drop=True)
        _, usable = window_inputs(ordered, features, window, step_ms)
        positions = np.flatnonzero(usable)
        cut = round(len(positions) * (1 - holdout_fraction))
        if cut < 1 or cut >= len(positions):
            raise NotEnoughHistoryError(
                f"cannot split {len(positions)} usable rows (window {window}) with holdout "
                f"{holdout_fraction}"
            )
        return cls(ordered, tuple(features), step_ms, positions[:cut], positions[cut:])

    @property
    def usable(self) -> np.ndarray:
        return np.concatenate([self.train, self.holdout])

    def inputs(
        self, window: int, positions: np.ndarray, features: tuple[str, ...] | None = None
    ) -> np.ndarray:
        """A ``window``-row kind's inputs (``features``, default the set's) at ``positions``."""
        key = (window, tuple(features or self.features))
        if key not in self._built:
            self._built[key] = window_inputs(self.frame, key[1], window, self.step_ms)[0]
        return self._built[key][positions]

    def target(self, positions: np.ndarray) -> np.ndarray:
        return self.frame["target"].to_numpy(dtype=np.float64)[positions]

    def times(self, positions: np.ndarray) -> pd.Series:
        return self.frame["event_timestamp"].iloc[positions].reset_index(drop=True)

    def holdout_artifact(self, columns: list[str]) -> pd.DataFrame:
        """The holdout with up to :data:`CONTEXT_ROWS` rows before it, flagged."""
        first = max(int(self.holdout[0]) - CONTEXT_ROWS, 0)
        rows = self.frame.iloc[first:][columns].copy()
        rows["holdout"] = False
        rows.loc[rows.index.isin(self.holdout), "holdout"] = True
        return rows.reset_index(drop=True)


@dataclass(frozen=True)
class Scored:
    """Inputs, targets and times of the holdout rows a kind can be scored on."""

    x: np.ndarray
    target: np.ndarray
    times: pd.Series


def holdout_inputs(
    artifact: pd.DataFrame, features: list[str], window: int, step_ms: int
) -> Scored:
    """A logged holdout (:meth:`TrainingSet.holdout_artifact`) as a kind's inputs: the
    held-out rows that have the kind's window behind them."""
    ordered = artifact.sort_values("event_timestamp").reset_index(drop=True)
    x, usable = window_inputs(ordered, features, window, step_ms)
    rows = ordered["holdout"].to_numpy(dtype=bool) & usable
    return Scored(
        x[rows],
        ordered["target"].to_numpy(dtype=np.float64)[rows],
        ordered["event_timestamp"][rows].reset_index(drop=True),
    )
