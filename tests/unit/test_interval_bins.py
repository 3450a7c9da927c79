"""Group-conditional (Mondrian) intervals: each volatility bin reaches the level where one
pooled multiplier fails, the card carries the bins, and the online per-bin states replay
evaluation's."""

from __future__ import annotations

import numpy as np
import pytest

from candlecast.evaluation import intervals as iv
from candlecast.modeling.card import IntervalCalibration
from candlecast.monitoring import aci
from candlecast.serving import aci as state_file

STEP = 3_600_000
BINNED = IntervalCalibration(
    source="qlike_log_linear",
    columns=["ewma_var", "rv_24"],
    weights=[0.5, 0.5],
    intercept=0.0,
    multipliers={"0.8": 1.3, "0.9": 1.7},
    bin_column="rv_24",
    bin_edges=[1e-4, 4e-4],
    bin_multipliers=[{"0.8": 1.6, "0.9": 2.1}, {"0.8": 1.3, "0.9": 1.7}, {"0.8": 1.0, "0.9": 1.3}],
)


def heteroscedastic(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ex-ante volatility, a sigma that carries all of it over, and outcomes whose spread
    follows only its square root (volatility mean-reverts): a pooled multiplier is too narrow
    in calm rows and too wide in stormy ones."""
    rng = np.random.default_rng(seed)
    level = np.exp(np.convolve(rng.normal(0, 0.4, n + 50), np.ones(50) / 7, "valid")[:n])
    sigma = level
    realized = rng.normal(0, 1, n) * np.sqrt(level)
    return level, sigma, realized


def tercile_coverage(realized, bands, level) -> tuple[float, ...]:
    inside = (bands.lower <= realized) & (realized <= bands.upper)
    bins = iv.volatility_bins(level, iv.bin_edges(level))
    return tuple(float(inside[bins == k].mean()) for k in range(3))


def test_bins_reach_the_level_in_every_tercile_where_one_multiplier_fails():
    level, sigma, realized = heteroscedastic(9000)
    calibration, rows = slice(0, 1500), slice(1500, None)
    edges = iv.bin_edges(level[calibration])
    common = {
        "coverage": 0.9,
        "horizon": 1,
        "calibration": np.abs(realized[calibration]) / sigma[calibration],
    }
    pooled = iv.adaptive_intervals(np.zeros(7500), sigma[rows], realized[rows], **common)
    binned = iv.adaptive_intervals(
        np.zeros(7500),
        sigma[rows],
        realized[rows],
        bins=iv.volatility_bins(level[rows], edges),
        calibration_bins=iv.volatility_bins(level[calibration], edges),
        **common,
    )
    low, _, high = tercile_coverage(realized[rows], pooled, level[rows])
    assert low < 0.85 and high > 0.95  # the failure the bins are for
    for share in tercile_coverage(realized[rows], binned, level[rows]):
        assert 0.88 <= share <= 0.92


def test_one_bin_is_the_pooled_intervals():
    _, sigma, realized = heteroscedastic(600)
    prior = np.abs(realized[:200]) / sigma[:200]
    args = (np.zeros(400), sigma[200:], realized[200:])
    pooled = iv.adaptive_intervals(*args, coverage=0.9, horizon=4, calibration=prior)
    one = iv.adaptive_intervals(
        *args,
        coverage=0.9,
        horizon=4,
        calibration=prior,
        bins=np.zeros(400, np.int64),
        calibration_bins=np.zeros(200, np.int64),
    )
    np.testing.assert_array_equal(pooled.upper, one.upper)


def test_a_bin_without_enough_calibration_scores_starts_from_all_of_them():
    scores = np.arange(100, dtype=np.float64)
    bins = np.array([0] * 90 + [1] * 10)
    assert len(iv.bin_prior(scores, bins, 0)) == 90
    assert len(iv.bin_prior(scores, bins, 1)) == 100
    assert len(iv.bin_prior(scores, bins, 2)) == 100  # an empty bin: never an infinite width


def test_edges_split_evenly_and_bins_count_from_the_lowest():
    values = np.arange(1.0, 10.0)
    edges = iv.bin_edges(values)
    assert np.bincount(iv.volatility_bins(values, edges)).tolist() == [3, 3, 3]
    assert iv.volatility_bins(np.array([0.0, 100.0]), edges).tolist() == [0, 2]


def test_the_card_picks_the_rows_bin_and_keeps_its_sigma():
    assert BINNED.inputs == ["ewma_var", "rv_24"]  # the bin column is a sigma column here
    assert [BINNED.bin_of([1e-4, v]) for v in (5e-5, 2e-4, 1e-3)] == [0, 1, 2]
    assert BINNED.for_bin(0).multipliers == {"0.8": 1.6, "0.9": 2.1}
    assert BINNED.for_bin(None) is BINNED
    other = BINNED.model_copy(update={"columns": ["ewma_var", "rv_12"]})
    assert other.inputs == ["ewma_var", "rv_12", "rv_24"]
    row = np.array([[1e-4, 2e-4, 9.0]])  # the bin column last does not enter the sigma
    assert other.sigma(row)[0] == pytest.approx(other.sigma(row[:, :2])[0])
    assert IntervalCalibration.model_validate_json(BINNED.model_dump_json()) == BINNED


def test_the_card_bins_rows_as_evaluation_binned_the_holdout():
    """One binning for a row, for rows and for a card's column: a value on an edge is in the
    bin above it (as evaluation's :func:`volatility_bins`), and an unknown one in the top bin."""
    column = np.array([0.0, 5e-5, 1e-4, 2e-4, 4e-4, 1e-3, np.nan])
    expected = [0, 0, 1, 1, 2, 2, 2]
    assert iv.volatility_bins(column, BINNED.bin_edges).tolist() == expected
    assert BINNED.bins(column).tolist() == expected
    rows = np.column_stack([np.full(len(column), 1e-4), column])
    assert [BINNED.bin_of(row) for row in rows] == expected
    per_bin = [m["0.9"] for m in BINNED.bin_multipliers]
    assert BINNED.row_multipliers(rows, "0.9").tolist() == [per_bin[k] for k in expected]


@pytest.mark.parametrize(
    "change",
    [
        {"bin_edges": [1e-4]},  # three bins' multipliers, two edges' worth
        {"bin_column": None},
        {"bin_multipliers": [{"0.9": 1.0}] * 3},  # a bin without the 0.8 level
    ],
)
def test_a_calibration_with_inconsistent_bins_is_refused(change):
    payload = BINNED.model_dump() | change
    with pytest.raises(ValueError, match="interval calibration"):
        IntervalCalibration.model_validate(payload)


def test_a_calibration_without_bins_still_loads():
    payload = BINNED.model_dump()
    for name in ("bin_column", "bin_edges", "bin_multipliers"):
        del payload[name]
    old = IntervalCalibration.model_validate(payload)
    assert old.bin_column is None and old.bin_of([1.0, 1.0]) is None and old.inputs == old.columns


def test_each_bins_online_state_replays_evaluations_bins():
    rng = np.random.default_rng(11)
    n, horizon = 600, 4
    level = np.exp(rng.normal(-8, 1, n))
    sigma = np.exp(rng.normal(-4, 0.3, n))
    realized = rng.standard_t(4, n) * sigma * 1.2
    bins = iv.volatility_bins(level, BINNED.bin_edges)
    priors = [np.array(aci.prior_scores(m)) for m in BINNED.bin_multipliers]
    expected = iv.adaptive_intervals(
        np.zeros(n),
        sigma,
        realized,
        coverage=0.9,
        horizon=horizon,
        calibration=np.concatenate(priors),
        calibration_bins=np.repeat([0, 1, 2], [len(p) for p in priors]),
        bins=bins,
    )
    rows = np.arange(n, dtype=np.int64) * STEP
    scores = {int(r): float(s) for r, s in zip(rows, np.abs(realized) / sigma, strict=True)}
    for k in range(3):
        last = int(np.flatnonzero(bins == k)[-1])
        seen = aci.Outcomes(rows[bins == k], scores, int(rows[last]) + STEP, STEP)
        state = aci.advance(None, BINNED.for_bin(k), "1", horizon, seen)
        assert state.levels["0.9"].alpha == pytest.approx(expected.alpha[last], abs=1e-12)
    assert state_file.state_path(state_file.Path("x"), 2).name == "aci-bin2.json"
