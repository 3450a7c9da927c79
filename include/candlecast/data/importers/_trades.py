"""Files of trades rather than candles: refused with a message saying so, or resampled into
candles on request (``--from-trades <timeframe>``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from candlecast.errors import HistoryFormatError
from candlecast.timeframes import ms_to_iso, timeframe_ms

#: The columns a trades reader returns: time (unix ms), price, amount (base asset).
TRADE_COLUMNS = ["ts", "price", "amount"]


def not_candles(path: Path, trades: pd.DataFrame, fmt: str) -> HistoryFormatError:
    """The error for a trades file offered as candles."""
    span = ""
    if len(trades):
        span = f", {ms_to_iso(int(trades['ts'].min()))} to {ms_to_iso(int(trades['ts'].max()))}"
    problem = (
        f"the file holds trades, not candles ({fmt}: {len(trades)} trades{span}); "
        "import it with --from-trades <timeframe> to resample them into candles"
    )
    return HistoryFormatError(path, problem)


def to_candles(trades: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Candles of ``timeframe`` from trades: open the first price, high and low the extremes,
    close the last, volume the summed amount, ``trades`` the count. A candle without trades
    is absent, as in Kraken's own OHLCVT files."""
    step = timeframe_ms(timeframe)
    ordered = trades.sort_values("ts", kind="stable")
    groups = ordered.groupby(ordered["ts"] // step * step, sort=True)
    price = groups["price"]
    frame = pd.DataFrame(
        {
            "open": price.first(),
            "high": price.max(),
            "low": price.min(),
            "close": price.last(),
            "volume": groups["amount"].sum(),
            "trades": groups.size().astype("float64"),
        }
    )
    return frame.rename_axis("ts").reset_index().astype({"ts": "int64"})
