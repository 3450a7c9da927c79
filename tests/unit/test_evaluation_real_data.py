"""The evaluation functions on the bundled BTC/USD hourly candles: identities that must hold
on real returns, and an honest walk-forward of a simple AR(1) forecast against persistence."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from candlecast.evaluation.backtest import backtest_long_flat
from candlecast.evaluation.metrics import directional_accuracy, persistence_ratios
from candlecast.evaluation.significance import block_bootstrap_ratio, diebold_mariano
from candlecast.evaluation.walkforward import predict_out_of_sample, walk_forward

FEE = 10 / 10_000


@pytest.fixture(scope="module")
def closes(btc_candles) -> np.ndarray:
    assert np.all(np.diff(btc_candles["ts"]) == 3_600_000)  # consecutive hours, no gaps
    return btc_candles["close"].to_numpy()


@pytest.fixture(scope="module")
def returns(closes) -> np.ndarray:
    """Hourly log returns: row t is the return of the candle after candle t (the target)."""
    return np.diff(np.log(closes))


def test_persistence_scores_exactly_one(returns):
    ratios = persistence_ratios(returns, np.zeros_like(returns))
    assert (ratios.rmse, ratios.mae) == (1.0, 1.0)


def test_buy_and_hold_is_the_price_change_less_the_entry_fee(closes, returns):
    hold = backtest_long_flat(returns, np.zeros_like(returns), timeframe="1h").buy_and_hold
    # The fee is 10 bps of the capital at entry, so it scales with the gain:
    # exp(sum) * (1 - fee) - 1, which is exp(sum) - 1 - fee less fee * (exp(sum) - 1).
    assert hold.total_return == pytest.approx(math.exp(returns.sum()) * (1 - FEE) - 1, rel=1e-9)
    assert hold.total_return == pytest.approx(closes[-1] / closes[0] * (1 - FEE) - 1, rel=1e-9)
    assert hold.equity[-1] == pytest.approx(closes[-1] / closes[0] * (1 - FEE), rel=1e-9)
    assert 0 < hold.max_drawdown < 1 and (hold.turnover, hold.trades) == (1, 1)


def test_always_up_scores_the_share_of_up_moves(returns):
    always_up = directional_accuracy(returns, np.ones_like(returns))
    moves = returns[returns != 0]
    assert always_up.flat == len(returns) - len(moves) > 0
    assert always_up.accuracy == always_up.up_share == pytest.approx(np.mean(moves > 0))
    assert always_up.majority_rate == always_up.accuracy  # up is the more common direction
    assert always_up.accuracy in always_up.interval


def test_perfect_foresight_beats_buy_and_hold_after_fees(returns):
    run = backtest_long_flat(returns, returns, timeframe="1h")
    assert run.strategy.total_return > run.buy_and_hold.total_return
    assert run.strategy.sharpe > run.buy_and_hold.sharpe


class LastReturn:
    """AR(1) by least squares: the next return from the last one."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        design = np.column_stack([np.ones(len(x)), x[:, 0]])
        self.coefficients = np.linalg.lstsq(design, y, rcond=None)[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.coefficients[0] + self.coefficients[1] * x[:, 0]


def test_a_walk_forward_ar1_does_not_beat_persistence(btc_candles, returns):
    x, y = returns[:-1, None], returns[1:]  # the last return forecasts the next
    times = btc_candles["ts"].to_numpy()[1:-1]  # the open time of the candle of x's return
    folds = walk_forward(len(y), train=timedelta(days=30), test=24 * 7, gap=1, times=times)
    out = predict_out_of_sample(LastReturn, x, y, folds)
    assert len(folds) > 150 and len(np.unique(out.position)) == len(out.position)
    assert out.position[0] == 30 * 24 + 1  # a full 30-day window, then the embargoed hour
    np.testing.assert_array_equal(out.target, y[out.position])

    ratios = persistence_ratios(out.target, out.predicted)
    assert 0.99 < ratios.rmse < 1.01  # no skill to speak of, either way
    test = diebold_mariano(out.predicted - out.target, -out.target)
    assert test.p_value > 0.05
    bootstrap = block_bootstrap_ratio(out.predicted - out.target, -out.target, resamples=500)
    assert 1.0 in bootstrap.interval
    run = backtest_long_flat(out.target, out.predicted, timeframe="1h")
    assert run.strategy.turnover > 1000  # trading on noise...
    assert run.strategy.total_return < run.buy_and_hold.total_return  # ...pays fees for nothing
