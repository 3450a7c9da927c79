"""How each served target did on the candles that followed: realized primary score (QLIKE,
RMSE), its ratio to persistence on the same rows, and realized 90% interval coverage.

The forecasts are recomputed from the validated candles with the served champion (its ONNX
model and card) for the rows of the current window whose label was realized before ``as_of``:
a target forecast depends only on its features, so this equals what the service answered for
those candles while that champion was served (a champion newer than a row is judged on it too:
the figures describe the champion, not the history of answers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.quality import usable_candles
from candlecast.features.volatility import har_windows
from candlecast.modeling.target_evaluation import target_frame
from candlecast.serving import targets as served_targets
from candlecast.settings import Settings
from candlecast.targets.volatility import VARIANCE_FLOOR
from candlecast.timeframes import timeframe_ms, to_ms


@dataclass(frozen=True)
class TargetRealized:
    key: str
    version: str | None
    kind: str
    forecasts: int
    metric: str
    score: float | None
    persistence: float | None
    ratio: float | None
    coverage_90: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def realized_targets(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings
) -> list[TargetRealized]:
    """Each served target's realized figures over the rows closing in ``span``."""
    served = served_targets.load(pair, settings, {})
    if not served:
        return []
    step = timeframe_ms(pair.timeframe)
    reach = har_windows(pair.timeframe)[2] + 2 * pair.features.warmup_candles
    stored = validated_table(pair.stream, settings).read(
        to_ms(span[0]) - reach * step, to_ms(span[1])
    )
    candles = usable_candles(pair, stored)
    return [_realized(pair, s, candles, span) for s in served] if len(candles) else []


def _realized(
    pair: PairConfig,
    served: served_targets.ServedTarget,
    candles: pd.DataFrame,
    span: tuple[datetime, datetime],
) -> TargetRealized:
    target, card = served.target, served.card
    frame = target_frame(candles, pair.timeframe, pair.stream.market_key, target)
    inside = (frame["event_timestamp"] > pd.Timestamp(span[0])) & (
        frame["event_timestamp"] <= pd.Timestamp(span[1])
    )
    frame = frame[inside].dropna(subset=card.features).reset_index(drop=True)
    if frame.empty:
        return TargetRealized(
            target.key, card.version, card.kind, 0, target.primary, None, None, None, None
        )
    x = frame[card.features].to_numpy(np.float32)
    predicted = np.asarray(served.session.run(None, {served.input_name: x})[0], np.float64)
    predicted = predicted.reshape(-1)
    y = frame["target"].to_numpy(np.float64)
    if target.name == "volatility":
        reference = np.maximum(frame[f"rv_{target.horizon}"].to_numpy(np.float64), VARIANCE_FLOOR)
    else:
        reference = np.zeros(len(y))
    score, persistence = target.primary_score(y, predicted), target.primary_score(y, reference)
    coverage = None
    if card.intervals is not None and "0.9" in card.intervals.multipliers:
        sigma = card.intervals.sigma(frame[card.intervals.columns].to_numpy(np.float64))
        half = card.intervals.multipliers["0.9"] * sigma
        coverage = float(np.mean(np.abs(y - predicted) <= half))
    return TargetRealized(
        key=target.key,
        version=card.version,
        kind=card.kind,
        forecasts=len(y),
        metric=target.primary,
        score=score,
        persistence=persistence,
        ratio=score / persistence if persistence > 0 else None,
        coverage_90=coverage,
    )
