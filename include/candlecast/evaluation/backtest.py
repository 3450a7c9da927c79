"""A long/flat backtest of a return forecast after fees, beside buy-and-hold.

Row ``t`` pairs the forecast made when candle ``t`` closed with the realised log return of
the next candle (the project's target). The strategy holds the asset over that next candle
when the forecast exceeds ``threshold``, and is flat (in cash, earning nothing) otherwise:
it trades at candle ``t``'s close, which the forecast already knows. Each change of position
costs ``fee_bps`` of the equity at that moment. The backtest starts flat with equity 1 and
marks an open position to market at the end (no closing fee), as buy-and-hold does.

It knows nothing of slippage, spreads, funding or position sizing: an upper bound on what
trading the forecast could have earned, good for comparing forecasts, not for promising
profits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from candlecast.timeframes import timeframe_ms

#: Trading days a year: crypto markets never close.
DAYS_PER_YEAR = 365
_DAY_MS = 86_400_000
_BPS = 10_000


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """One strategy's run.

    Attributes:
        total_return: simple return over the whole period, after fees (``equity[-1] - 1``).
        sharpe: annualised Sharpe ratio of the per-candle net simple returns (no risk-free
            rate); 0 when they never vary (always flat).
        max_drawdown: largest fall from a running peak of equity (starting at 1), as a
            positive fraction.
        turnover: changes of position (entries plus exits).
        trades: entries (flat to long).
        exposure: share of candles held long.
        equity: equity after each candle (read-only).
        position: position held over each candle, 1 long or 0 flat (read-only).
    """

    total_return: float
    sharpe: float
    max_drawdown: float
    turnover: int
    trades: int
    exposure: float
    equity: np.ndarray
    position: np.ndarray


@dataclass(frozen=True, eq=False)
class Backtest:
    """The forecast's long/flat strategy and buy-and-hold on the same candles and fees."""

    strategy: BacktestResult
    buy_and_hold: BacktestResult


def backtest_long_flat(
    realized: np.ndarray,
    predicted: np.ndarray,
    *,
    timeframe: str,
    threshold: float = 0.0,
    fee_bps: float = 10.0,
) -> Backtest:
    """Backtest holding the next candle when ``predicted > threshold`` (see the module doc).

    Args:
        realized: the next candle's log return, per row (the target).
        predicted: the forecast of it, per row.
        timeframe: candle length (``1h``), for annualising the Sharpe ratio.
        threshold: the forecast return above which the strategy is long.
        fee_bps: cost of one change of position, in basis points of equity.

    Raises:
        ValueError: shapes differ, no rows, non-finite values, a fee outside ``[0, 10000)``
            or an unsupported timeframe.
    """
    realized, predicted = _inputs(realized, predicted)
    if not 0 <= fee_bps < _BPS:
        raise ValueError(f"fee must be in [0, {_BPS}) bps, got {fee_bps}")
    periods = periods_per_year(timeframe)
    fee = fee_bps / _BPS
    held = (predicted > threshold).astype(np.int8)
    return Backtest(
        strategy=run_positions(realized, held, fee=fee, periods_per_year=periods),
        buy_and_hold=run_positions(realized, np.ones_like(held), fee=fee, periods_per_year=periods),
    )


def run_positions(
    realized: np.ndarray, position: np.ndarray, *, fee: float, periods_per_year: float
) -> BacktestResult:
    """Equity of holding ``position`` (1 long, 0 flat) over each candle's log return
    ``realized``, starting flat with equity 1 and paying ``fee`` (a fraction of equity) per
    change of position."""
    position = np.array(position, dtype=np.int8)  # a copy: it is frozen below
    steps = np.diff(position, prepend=np.int8(0))
    changes = np.abs(steps)
    log_growth = position * realized + changes * math.log1p(-fee)
    equity = np.exp(np.cumsum(log_growth))
    returns = np.expm1(log_growth)
    equity.setflags(write=False)
    position.setflags(write=False)
    return BacktestResult(
        total_return=float(equity[-1] - 1),
        sharpe=sharpe_ratio(returns, periods_per_year),
        max_drawdown=max_drawdown(equity),
        turnover=int(changes.sum()),
        trades=int(np.sum(steps == 1)),
        exposure=float(position.mean()),
        equity=equity,
        position=position,
    )


def periods_per_year(timeframe: str) -> float:
    """Candles of ``timeframe`` in a :data:`DAYS_PER_YEAR`-day year."""
    return DAYS_PER_YEAR * _DAY_MS / timeframe_ms(timeframe)


def sharpe_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio of per-period simple ``returns``: mean / sample std ×
    ``sqrt(periods_per_year)``; 0 with fewer than 2 returns or when they never vary."""
    returns = np.asarray(returns, dtype=np.float64)
    if len(returns) < 2:
        return 0.0
    spread = float(np.std(returns, ddof=1))
    if spread <= 1e-15:  # all equal up to rounding: no risk, no ratio
        return 0.0
    return float(np.mean(returns)) / spread * math.sqrt(periods_per_year)


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall of ``equity`` from its running peak, as a positive fraction of the peak;
    the peak starts at the initial equity 1."""
    equity = np.asarray(equity, dtype=np.float64)
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return float(np.max(1 - equity / peaks, initial=0.0))


def _inputs(realized: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    realized = np.asarray(realized, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if realized.shape != predicted.shape or realized.ndim != 1 or len(realized) == 0:
        shapes = f"{realized.shape}, {predicted.shape}"
        raise ValueError(f"expected two non-empty 1-D arrays of one shape, got {shapes}")
    if not (np.all(np.isfinite(realized)) and np.all(np.isfinite(predicted))):
        raise ValueError("realised returns and forecasts must be finite")
    return realized, predicted
