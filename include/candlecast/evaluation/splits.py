"""Chronological splits: the past trains, the future judges; never a shuffle."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from candlecast.errors import NotEnoughHistoryError


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def chronological_split(frame: pd.DataFrame, holdout_fraction: float) -> Split:
    """Oldest rows train, the newest ``holdout_fraction`` are held out; no shuffling.

    Raises:
        ValueError: too few rows for both parts.
    """
    ordered = frame.sort_values("event_timestamp").reset_index(drop=True)
    cut = round(len(ordered) * (1 - holdout_fraction))
    if cut < 1 or cut >= len(ordered):
        raise NotEnoughHistoryError(
            f"cannot split {len(ordered)} rows with holdout {holdout_fraction}"
        )
    return Split(ordered.iloc[:cut], ordered.iloc[cut:])
