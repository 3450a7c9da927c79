"""The long/flat backtest on hand examples: flat earns nothing, always long is buy-and-hold,
fees cost exactly their share per change of position, foresight wins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from candlecast.evaluation.backtest import (
    backtest_long_flat,
    max_drawdown,
    periods_per_year,
    run_positions,
    sharpe_ratio,
)

FEE = 10 / 10_000


def random_walk(seed: int, rows: int = 2000) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0002, 0.01, rows)


def test_always_flat_earns_nothing_and_trades_never():
    realized = random_walk(0)
    result = backtest_long_flat(realized, -np.ones_like(realized), timeframe="1h").strategy
    assert (result.total_return, result.sharpe, result.max_drawdown) == (0.0, 0.0, 0.0)
    assert (result.turnover, result.trades, result.exposure) == (0, 0, 0.0)
    np.testing.assert_array_equal(result.equity, np.ones_like(realized))


@pytest.mark.parametrize("fee_bps", [0.0, 10.0, 25.0])
def test_always_long_is_buy_and_hold_paying_one_entry_fee(fee_bps):
    realized = random_walk(1)
    run = backtest_long_flat(realized, np.ones_like(realized), timeframe="1h", fee_bps=fee_bps)
    fee = fee_bps / 10_000
    for result in (run.strategy, run.buy_and_hold):
        assert result.total_return == pytest.approx(math.exp(realized.sum()) * (1 - fee) - 1)
        assert (result.turnover, result.trades, result.exposure) == (1, 1, 1.0)
    np.testing.assert_allclose(run.strategy.equity, run.buy_and_hold.equity, rtol=1e-15)
    assert run.strategy.sharpe == run.buy_and_hold.sharpe


def test_a_hand_example():
    realized = np.log([1.1, 0.8, 1.25, 0.5])
    run = backtest_long_flat(realized, np.array([0.3, -0.1, 0.2, 0.0]), timeframe="1d")
    strategy = run.strategy
    assert strategy.position.tolist() == [1, 0, 1, 0]  # a forecast of 0 is not above 0
    assert (strategy.turnover, strategy.trades, strategy.exposure) == (4, 2, 0.5)
    expected = [1.1 * 0.999, 1.1 * 0.999**2, 1.1 * 0.999**3 * 1.25, 1.1 * 0.999**4 * 1.25]
    np.testing.assert_allclose(strategy.equity, expected, rtol=1e-12)
    assert strategy.total_return == pytest.approx(1.375 * 0.999**4 - 1)
    assert strategy.max_drawdown == pytest.approx(1 - 0.999)  # only the exit fee ever loses
    hold = run.buy_and_hold
    np.testing.assert_allclose(hold.equity, 0.999 * np.array([1.1, 0.88, 1.1, 0.55]))
    assert hold.max_drawdown == pytest.approx(0.5)  # from 1.1 * 0.999 down to 0.55 * 0.999


@pytest.mark.parametrize(
    ("threshold", "position"), [(-1.0, [1, 1, 1]), (0.0, [1, 1, 0]), (0.0015, [1, 0, 0])]
)
def test_the_threshold_decides_the_position(threshold, position):
    run = backtest_long_flat(
        np.zeros(3), np.array([0.002, 0.001, -0.001]), timeframe="1h", threshold=threshold
    )
    assert run.strategy.position.tolist() == position


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_fees_cost_their_share_for_every_change_of_position(seed):
    realized = random_walk(seed)
    signal = np.random.default_rng(seed + 100).normal(size=realized.size)
    gross = backtest_long_flat(realized, signal, timeframe="1h", fee_bps=0).strategy
    net = backtest_long_flat(realized, signal, timeframe="1h", fee_bps=10).strategy
    assert gross.turnover == net.turnover > 100
    lost = math.log1p(gross.total_return) - math.log1p(net.total_return)
    assert lost == pytest.approx(-net.turnover * math.log1p(-FEE))
    assert net.total_return < gross.total_return


def test_perfect_foresight_beats_buy_and_hold():
    realized = random_walk(5)
    run = backtest_long_flat(realized, realized, timeframe="1h")
    assert run.strategy.total_return > run.buy_and_hold.total_return
    assert run.strategy.sharpe > run.buy_and_hold.sharpe
    assert run.strategy.max_drawdown < run.buy_and_hold.max_drawdown


@pytest.mark.parametrize(
    ("equity", "drawdown"),
    [
        ([1.1, 0.88, 0.99, 1.21, 0.605], 0.5),  # the deepest fall is after the second peak
        ([1.1, 1.2, 1.3], 0.0),  # never falls
        ([0.9, 0.8, 1.5], 0.2),  # falls from the initial equity 1
        ([1.0, 1.0], 0.0),
        ([2.0, 1.0, 3.0, 2.4], 0.5),  # from 2.0 to 1.0, deeper than 3.0 to 2.4
    ],
)
def test_max_drawdown(equity, drawdown):
    assert max_drawdown(np.array(equity)) == pytest.approx(drawdown)


@pytest.mark.parametrize(
    ("timeframe", "periods"), [("1h", 8760), ("4h", 2190), ("1d", 365), ("1m", 525_600)]
)
def test_periods_per_year(timeframe, periods):
    assert periods_per_year(timeframe) == periods


def test_sharpe_ratio_on_a_hand_example():
    returns = np.array([0.01, -0.01, 0.02])
    expected = (0.02 / 3) / np.std(returns, ddof=1) * math.sqrt(365)
    assert sharpe_ratio(returns, 365) == pytest.approx(expected)
    assert sharpe_ratio(np.array([0.01]), 365) == 0.0
    assert sharpe_ratio(np.full(5, 0.003), 365) == 0.0  # no variation, no ratio


def test_results_are_read_only_and_inputs_untouched():
    position = np.array([1, 0, 1], dtype=np.int8)
    result = run_positions(np.zeros(3), position, fee=0.001, periods_per_year=8760)
    assert position.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        result.equity[0] = 2.0


@pytest.mark.parametrize(
    ("realized", "predicted", "kwargs", "message"),
    [
        (np.zeros(3), np.zeros(4), {}, "one shape"),
        (np.zeros(0), np.zeros(0), {}, "non-empty"),
        (np.array([0.0, np.nan]), np.zeros(2), {}, "finite"),
        (np.zeros(2), np.zeros(2), {"fee_bps": -1}, "fee"),
        (np.zeros(2), np.zeros(2), {"timeframe": "1y"}, "timeframe"),
    ],
)
def test_bad_input_is_refused(realized, predicted, kwargs, message):
    kwargs = {"timeframe": "1h", **kwargs}
    with pytest.raises(ValueError, match=message):
        backtest_long_flat(realized, predicted, **kwargs)
