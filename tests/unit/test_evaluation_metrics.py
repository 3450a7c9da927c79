"""Metrics on hand-computable arrays: skill over persistence, directional accuracy on moves
with a direction, Wilson intervals against published values, interval coverage and
split-conformal half-widths."""

from __future__ import annotations

import numpy as np
import pytest

from candlecast.evaluation.metrics import (
    Interval,
    conformal_half_width,
    conformal_interval,
    directional_accuracy,
    interval_coverage,
    mae,
    persistence_ratios,
    rmse,
    score,
    wilson_interval,
)


def test_score_keeps_its_keys_for_training():
    scores = score(np.array([0.1, -0.2]), np.array([0.0, -0.1]))
    assert list(scores) == ["mae", "rmse", "directional_accuracy"]
    assert scores["mae"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("target", "predicted", "rmse_value", "mae_value"),
    [
        ([1.0, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], np.sqrt(6 / 4), 1.0),
        ([1.0, -2.0, 2.0, -1.0], [0.5, -1.0, 1.0, -0.5], np.sqrt(2.5 / 4), 0.75),
        ([3.0], [-1.0], 4.0, 4.0),
    ],
)
def test_rmse_and_mae(target, predicted, rmse_value, mae_value):
    assert rmse(np.array(target), np.array(predicted)) == pytest.approx(rmse_value)
    assert mae(np.array(target), np.array(predicted)) == pytest.approx(mae_value)


@pytest.mark.parametrize(
    ("predicted", "rmse_ratio", "mae_ratio"),
    [
        ([0.0, 0.0, 0.0, 0.0], 1.0, 1.0),  # persistence itself
        ([0.5, -1.0, 1.0, -0.5], 0.5, 0.5),  # half of every move
        ([1.0, -2.0, 2.0, -1.0], 0.0, 0.0),  # perfect
        ([-1.0, 2.0, -2.0, 1.0], 2.0, 2.0),  # every move backwards
        ([0.0, 0.0, 0.0, -0.5], np.sqrt(9.25 / 10), 5.5 / 6),  # one error 1 -> 0.5
    ],
)
def test_ratios_to_persistence(predicted, rmse_ratio, mae_ratio):
    target = np.array([1.0, -2.0, 2.0, -1.0])
    ratios = persistence_ratios(target, np.array(predicted))
    assert ratios.rmse == pytest.approx(rmse_ratio)
    assert ratios.mae == pytest.approx(mae_ratio)


def test_ratios_need_a_move_and_matching_shapes():
    with pytest.raises(ValueError, match="every target is 0"):
        persistence_ratios(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="1-D arrays of one shape"):
        persistence_ratios(np.ones(3), np.ones(4))


def test_directional_accuracy_scores_only_rows_with_two_directions():
    target = np.array([0.1, -0.2, 0.3, 0.0, 0.4, -0.1, 0.0])
    predicted = np.array([0.2, 0.1, 0.1, 0.5, 0.0, -0.3, 0.0])
    result = directional_accuracy(target, predicted)
    assert (result.hits, result.count, result.flat, result.abstained) == (3, 4, 2, 1)
    assert result.accuracy == 0.75
    assert (result.up_share, result.majority_rate) == (0.5, 0.5)
    assert result.interval == wilson_interval(3, 4)


@pytest.mark.parametrize(
    ("predicted", "accuracy", "majority_rate"),
    [
        ([1, 1, 1, 1, 1], 0.8, 0.8),  # always up scores the majority rate
        ([-1, -1, -1, -1, -1], 0.2, 0.8),
        ([1, 1, 1, 1, -1], 1.0, 0.8),
        ([-1, -1, -1, -1, 1], 0.0, 0.8),
    ],
)
def test_directional_accuracy_beside_the_always_up_baseline(predicted, accuracy, majority_rate):
    target = np.array([0.01, 0.02, 0.03, 0.04, -0.05])
    result = directional_accuracy(target, np.array(predicted, dtype=float))
    assert result.accuracy == pytest.approx(accuracy)
    assert result.majority_rate == pytest.approx(majority_rate)


def test_persistence_has_no_directional_accuracy():
    result = directional_accuracy(np.array([0.1, -0.1]), np.zeros(2))
    assert result.count == 0 and result.abstained == 2
    assert np.isnan(result.accuracy) and np.isnan(result.majority_rate)
    assert result.interval == Interval(0.0, 1.0)


# successes, trials, confidence -> Wilson interval (Wilson 1927; Newcombe 1998, table I)
WILSON = [
    (8, 10, 0.95, 0.4902, 0.9433),
    (0, 10, 0.95, 0.0, 0.2775),
    (10, 10, 0.95, 0.7225, 1.0),
    (50, 100, 0.95, 0.4038, 0.5962),
    (81, 263, 0.95, 0.2553, 0.3662),  # Newcombe 1998 example
    (15, 148, 0.95, 0.0624, 0.1605),  # Newcombe 1998 example
    (0, 20, 0.95, 0.0, 0.1611),  # Newcombe 1998 example
    (1, 29, 0.95, 0.0061, 0.1718),  # Newcombe 1998 example
]


@pytest.mark.parametrize(("hits", "trials", "confidence", "low", "high"), WILSON)
def test_wilson_interval_matches_published_values(hits, trials, confidence, low, high):
    interval = wilson_interval(hits, trials, confidence)
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(("hits", "trials"), [(3, 7), (520, 1000), (1, 2), (999, 1000)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_interval_agrees_with_statsmodels(hits, trials, confidence):
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    low, high = proportion.proportion_confint(hits, trials, 1 - confidence, method="wilson")
    interval = wilson_interval(hits, trials, confidence)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    assert hits / trials in interval


@pytest.mark.parametrize(
    ("hits", "trials", "confidence"), [(-1, 3, 0.95), (4, 3, 0.95), (1, 3, 1.0), (1, 3, 0.0)]
)
def test_wilson_interval_refuses_impossible_counts(hits, trials, confidence):
    with pytest.raises(ValueError):
        wilson_interval(hits, trials, confidence)


def test_interval_coverage_counts_bounds_as_covered():
    target = np.array([0.0, 1.0, 2.0, 3.0, -1.0])
    lower = np.array([-1.0, 1.0, 0.0, 3.5, -0.5])
    upper = np.array([1.0, 2.0, 2.0, 4.0, 0.5])
    coverage = interval_coverage(target, lower, upper)
    assert (coverage.covered, coverage.count) == (3, 5)
    assert coverage.rate == 0.6
    assert coverage.mean_width == pytest.approx((2 + 1 + 2 + 0.5 + 1) / 5)


def test_interval_coverage_refuses_crossed_bounds():
    with pytest.raises(ValueError, match="above its upper bound"):
        interval_coverage(np.zeros(2), np.array([0.0, 1.0]), np.array([1.0, 0.5]))


@pytest.mark.parametrize(
    ("residuals", "coverage", "half_width"),
    [
        (np.arange(1.0, 20.0), 0.9, 18.0),  # n 19: the ceil(20 * 0.9) = 18th smallest
        (-np.arange(1.0, 20.0), 0.9, 18.0),  # signs do not matter
        (np.arange(1.0, 10.0), 0.9, 9.0),  # n 9 is just enough: 10 * 0.9 = 9 (not 9.0000001)
        (np.arange(1.0, 100.0), 0.5, 50.0),  # ceil(100 * 0.5) = 50
        (np.arange(1.0, 100.0), 0.95, 95.0),
        (np.array([0.3, -0.1, 0.2]), 0.5, 0.2),  # ceil(4 * 0.5) = 2nd of 0.1, 0.2, 0.3
    ],
)
def test_conformal_half_width_is_the_right_order_statistic(residuals, coverage, half_width):
    assert conformal_half_width(residuals, coverage) == half_width


def test_conformal_half_width_needs_enough_residuals():
    with pytest.raises(ValueError, match="8 residuals are too few for 90% coverage"):
        conformal_half_width(np.arange(1.0, 9.0), 0.9)
    with pytest.raises(ValueError, match="finite"):
        conformal_half_width(np.array([1.0, np.nan, 2.0]), 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal_half_width(np.arange(10.0), 1.0)


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_intervals_cover_new_exchangeable_targets(coverage):
    rng = np.random.default_rng(7)
    holdout = rng.standard_t(df=4, size=2000)  # heavy-tailed, like returns
    half_width = conformal_half_width(holdout, coverage)
    new = rng.standard_t(df=4, size=50_000)
    lower, upper = conformal_interval(np.zeros_like(new), half_width)
    assert interval_coverage(new, lower, upper).rate == pytest.approx(coverage, abs=0.015)


def test_the_majority_direction_can_be_down():
    target = np.array([-0.01, -0.02, -0.03, 0.04])
    result = directional_accuracy(target, -np.ones(4))  # always down
    assert result.up_share == 0.25
    assert result.majority_rate == result.accuracy == 0.75
