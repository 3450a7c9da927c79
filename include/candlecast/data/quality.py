"""What a stream's validated candles say about their quality: the candles flagged as odd,
the market's liquidity, and which candles features, training and evaluation take."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.checks import FLAG_BITS
from candlecast.data.ingestion import raw_table, validated_table
from candlecast.data.liquidity import Liquidity, liquidity
from candlecast.data.schema import FLAGS
from candlecast.names import Stream
from candlecast.settings import Settings
from candlecast.timeframes import timeframe_ms


def usable_candles(pair: PairConfig, candles: pd.DataFrame) -> pd.DataFrame:
    """Validated candles as features, training and evaluation take them: without the ones
    flagged as odd where the pair's ``data.exclude_flagged`` says so (default: all kept)."""
    if not pair.data.exclude_flagged or FLAGS not in candles.columns:
        return candles
    return candles[candles[FLAGS].fillna(0) == 0].reset_index(drop=True)


def stored_liquidity(
    stream: Stream, settings: Settings | None = None, candles: int = 10_000
) -> Liquidity | None:
    """The liquidity of a stream's newest ``candles`` validated candles (None: none stored)."""
    table = validated_table(stream, settings)
    newest = table.last_key()
    if newest is None:
        return None
    step = timeframe_ms(stream.timeframe)
    recent = table.read(newest - (candles - 1) * step, newest + step)
    return liquidity(recent) if len(recent) else None


def stored_flags(stream: Stream, settings: Settings | None = None) -> dict[str, int]:
    """How many validated candles of a stream each oddity flagged."""
    stored = validated_table(stream, settings).read()
    if stored.empty or FLAGS not in stored.columns:
        return {}
    bits = stored[FLAGS].fillna(0).astype("int64")
    counts = {name: int((bits & bit != 0).sum()) for name, bit in FLAG_BITS.items()}
    return {name: count for name, count in counts.items() if count}


def refused_candles(stream: Stream, settings: Settings | None = None) -> np.ndarray:
    """Open times of fetched candles validation refused: in ``raw`` within the span of the
    validated candles, but not validated (their rules are in the quarantine)."""
    validated = validated_table(stream, settings).keys()
    if not len(validated):
        return np.empty(0, dtype=np.int64)
    first, last = int(validated.min()), int(validated.max())
    raw = raw_table(stream, settings).keys(first, last + 1)
    return np.setdiff1d(raw[(raw >= first) & (raw <= last)], validated)
