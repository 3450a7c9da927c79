"""The candle frame every source, reader, store and check of candlecast speaks."""

from __future__ import annotations

#: The columns of a candle frame, in ccxt's order; ``ts`` is the candle open time in unix ms.
CANDLE_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
#: Given by some sources (a seventh field after volume; Kraken's trade count), kept and
#: checked when present.
OPTIONAL_COLUMNS = ["quote_volume", "trades"]
#: Validated candles only: a bit per statistical oddity validation found in the row
#: (:data:`candlecast.data.checks.FLAG_BITS`); 0 for a clean candle.
FLAGS = "flags"
