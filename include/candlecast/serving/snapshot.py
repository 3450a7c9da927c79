"""One stream's served state, replaced as a whole (:class:`Snapshot`), and the JSON answer made
from it (:func:`answer`, narrowed by :func:`select`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from candlecast.config import PairConfig
from candlecast.serving import targets as served_targets
from candlecast.serving.loaded import LoadedModel, model_info
from candlecast.timeframes import ms_to_iso, timeframe_ms


@dataclass(frozen=True)
class Snapshot:
    """Everything one stream's answers come from, replaced as a whole."""

    pair: PairConfig
    model: LoadedModel
    candle_ts: int
    close: float
    predicted: float
    loaded_at: float = field(default_factory=time.time)
    #: The stream's other targets and horizons, and the next candle's intervals.
    extra: served_targets.TargetForecasts | None = None

    @property
    def features_at_ms(self) -> int:
        """Close time of the candle the features describe."""
        return self.candle_ts + timeframe_ms(self.pair.timeframe)

    def stale(self, now_ms: int) -> bool:
        step = timeframe_ms(self.pair.timeframe)
        return now_ms - self.features_at_ms > self.pair.serving.max_feature_age_candles * step


def answer(snap: Snapshot, now_ms: int | None = None) -> dict[str, Any]:
    """The JSON answer of a snapshot (:class:`~candlecast.serving.schemas.Forecast`)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    pair, card, predicted, close = snap.pair, snap.model.card, snap.predicted, snap.close
    step = timeframe_ms(pair.timeframe)
    body: dict[str, Any] = {
        "pair": pair.symbol,
        "exchange": pair.exchange,
        "timeframe": pair.timeframe,
        "stream": pair.key,
        "horizon": 1,
        "predicted_return": predicted,
        "predicted_price": close * math.exp(predicted),
        "last_close": close,
        "feature_timestamp": ms_to_iso(snap.features_at_ms),
        "forecast_for": ms_to_iso(snap.features_at_ms + step),
        "stale": snap.stale(now_ms),
        "model": model_info(snap.model),
        "served_at": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(),
    }
    extra = snap.extra
    if extra is not None and extra.main_intervals is not None:
        body["intervals"] = extra.main_intervals
        headline = extra.main_intervals["levels"].get("0.9")
        if headline is not None:
            body["interval"] = {"coverage": 0.9, **headline}
    half_width = card.interval_half_width
    if half_width is not None and "interval" not in body:
        low, high = predicted - half_width, predicted + half_width
        body["interval"] = {
            "coverage": card.interval_coverage,
            "return": [low, high],
            "price": [close * math.exp(low), close * math.exp(high)],
        }
    if card.note:
        body["note"] = card.note
    if extra is not None:
        body["targets"] = list(extra.answers)
        if extra.missing:
            body["targets_not_trained"] = list(extra.missing)
    return body


def select(body: dict[str, Any], target: str | None, horizon: int) -> dict[str, Any]:
    """An answer narrowed to one (target, horizon): the next-candle return is the answer's
    own forecast; any other is its entry in ``targets``.

    Raises:
        ValueError: the stream does not forecast that target at that horizon (the message
            lists what it does forecast).
    """
    name = target or "return"
    if (name, horizon) == ("return", 1):
        return {**body, "targets": []}
    chosen = [t for t in body.get("targets", []) if (t["target"], t["horizon"]) == (name, horizon)]
    if not chosen:
        offered = ["return_h1", *(t["key"] for t in body.get("targets", []))]
        raise ValueError(
            f"{body['stream']} serves no {name} forecast at horizon {horizon}; it serves "
            f"{', '.join(offered)} (training.targets in the pair config)"
        )
    return {**body, "targets": chosen}
