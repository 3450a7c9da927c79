"""How liquid a market's candles are: the share of candles without a trade, and the median
number of trades per candle where the source gives trade counts (Kraken's OHLCVT files).

A minute without trades is a fact of a thin market, not an error; a market where most
candles trade nothing is still worth a warning, since little can be learnt from it and
completeness alone hides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: Beyond this share of zero-volume candles a market counts as thin.
THIN_ZERO_SHARE = 0.25
#: Below this median of trades per candle a market counts as thin.
THIN_MEDIAN_TRADES = 3.0


@dataclass(frozen=True)
class Liquidity:
    """Zero-volume candles among ``candles``; median trades per candle (None: no counts)."""

    candles: int
    zero_volume: int
    median_trades: float | None = None

    @property
    def zero_share(self) -> float:
        return self.zero_volume / self.candles if self.candles else 0.0

    @property
    def thin(self) -> bool:
        few_trades = self.median_trades is not None and self.median_trades < THIN_MEDIAN_TRADES
        return self.zero_share > THIN_ZERO_SHARE or few_trades

    def describe(self) -> str:
        trades = (
            f", median {self.median_trades:g} trades per candle"
            if self.median_trades is not None
            else ""
        )
        what = "thin market: " if self.thin else ""
        return f"{what}{self.zero_share:.1%} of {self.candles} candles without trades{trades}"

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "candles": self.candles,
            "zero_volume_share": round(self.zero_share, 4),
            "median_trades": self.median_trades,
            "thin": self.thin,
        }


def liquidity(candles: pd.DataFrame) -> Liquidity:
    """The liquidity of a candle frame (``volume``, and ``trades`` where it has one)."""
    if "volume" not in candles.columns:  # a broken batch: the expectations say so
        return Liquidity(len(candles), 0)
    volume = pd.to_numeric(candles["volume"], errors="coerce")
    trades = None
    if "trades" in candles.columns and candles["trades"].notna().any():
        trades = float(pd.to_numeric(candles["trades"], errors="coerce").median())
    return Liquidity(len(candles), int((volume == 0).sum()), trades)
