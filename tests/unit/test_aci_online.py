"""Adaptive conformal inference online: the persisted state replays evaluation's ACI in data
time, moves the right way after misses and hits, judges each outcome once, uses only outcomes
realized by the check, persists across processes and restarts for a new champion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from candlecast.evaluation.intervals import adaptive_intervals
from candlecast.modeling.card import IntervalCalibration
from candlecast.monitoring import aci
from candlecast.serving import aci as state_file

STEP = 3_600_000
CALIBRATION = IntervalCalibration(
    sigma_feature="ewma_var", multipliers={"0.8": 1.3, "0.9": 1.7, "0.95": 2.0}
)


def outcomes(scores: np.ndarray, as_of_row: int, horizon: int = 1) -> aci.Outcomes:
    """Rows 0..n-1 one candle apart; a check at the close of row ``as_of_row`` sees the rows
    forecast by then and the scores realized by then."""
    rows = np.arange(len(scores), dtype=np.int64) * STEP
    as_of = int(rows[as_of_row]) + STEP
    known = {int(r): float(s) for r, s in zip(rows, scores, strict=True)}
    return aci.Outcomes(rows=rows, scores=known, as_of=as_of, step=STEP)


def advance(state, scores, upto, horizon=1, version="3"):
    return aci.advance(state, CALIBRATION, version, horizon, outcomes(scores, upto, horizon))


def test_the_prior_reproduces_the_cards_multipliers():
    scores = np.array(aci.prior_scores(CALIBRATION.multipliers))
    for level, multiplier in CALIBRATION.multipliers.items():
        assert np.quantile(scores, float(level), method="higher") == pytest.approx(
            multiplier, rel=0.01
        )
    assert scores.max() > 2.0  # a tail above the highest level, for ACI to widen into


def test_a_new_state_serves_the_cards_multipliers():
    fresh = aci.fresh_state(CALIBRATION, "3", 4)
    for level, found in fresh.levels.items():
        assert found.multiplier == CALIBRATION.multipliers[level]
        assert found.alpha == pytest.approx(1 - float(level))


def test_misses_widen_and_hits_narrow():
    misses = advance(None, np.full(12, 50.0), 11)
    hits = advance(None, np.zeros(12), 11)
    for level, multiplier in CALIBRATION.multipliers.items():
        nominal = 1 - float(level)
        assert misses.levels[level].alpha < nominal < hits.levels[level].alpha
        assert misses.levels[level].multiplier > multiplier > hits.levels[level].multiplier
        assert misses.levels[level].judged == 11 and misses.levels[level].misses >= 9
        assert hits.levels[level].misses == 0


def test_the_online_replay_is_evaluations_aci():
    rng = np.random.default_rng(7)
    n, horizon = 400, 4
    sigma = np.exp(rng.normal(-4, 0.3, n))
    realized = rng.standard_t(4, n) * sigma * 1.2  # wider than the prior: ACI must widen
    scores = np.abs(realized) / sigma
    prior = np.array(aci.prior_scores(CALIBRATION.multipliers))
    expected = adaptive_intervals(
        np.zeros(n), sigma, realized, coverage=0.9, horizon=horizon, calibration=prior
    )
    state = advance(None, scores, n - 1, horizon)
    assert state.levels["0.9"].alpha == pytest.approx(expected.alpha[-1], abs=1e-12)
    assert state.levels["0.9"].judged == n - horizon


def test_checks_in_steps_equal_one_check_and_a_rerun_counts_nothing_twice():
    rng = np.random.default_rng(3)
    scores = np.abs(rng.standard_t(3, 300)) * 1.3
    once = advance(None, scores, 299, horizon=4)
    stepped = None
    for upto in (50, 51, 51, 120, 299, 299):
        stepped = advance(stepped, scores, upto, horizon=4)
    assert stepped is not None
    assert stepped.levels == once.levels and stepped.pending == once.pending
    again = advance(once, scores, 299, horizon=4)
    assert again is once  # re-running the same interval changes nothing


def test_a_check_uses_only_outcomes_realized_by_its_time():
    scores = np.zeros(100)
    early = advance(None, scores, 40, horizon=4)
    # later outcomes, misses all, are in the data but not realized at row 40's close
    later = scores.copy()
    later[40:] = 50.0
    assert advance(None, later, 40, horizon=4).levels == early.levels
    assert early.levels["0.9"].judged == 41 - 4
    assert sorted(early.pending) == [r * STEP for r in range(37, 41)]


def test_a_new_champion_version_starts_again_from_its_card():
    moved = advance(None, np.full(200, 50.0), 199)
    restarted = advance(moved, np.full(200, 50.0), 199, version="4")
    assert restarted.identity != moved.identity
    assert restarted.levels["0.9"].judged == 199  # the window replayed on the new champion
    fresh = aci.advance(moved, CALIBRATION, "4", 1, aci.Outcomes(np.array([]), {}, 0, STEP))
    assert fresh.levels["0.9"].multiplier == 1.7 and fresh.levels["0.9"].judged == 0


def test_the_state_persists_across_processes(tmp_path):
    state = advance(None, np.full(120, 50.0), 119)
    path = state_file.state_path(tmp_path)
    state_file.write_state(path, state)
    code = (
        "import sys; from candlecast.serving.aci import read_state; from pathlib import Path; "
        "s = read_state(Path(sys.argv[1])); print(s.levels['0.9'].alpha, s.through)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    alpha, through = out.stdout.split()
    assert float(alpha) == state.levels["0.9"].alpha and int(through) == state.through
    assert state_file.read_state(path) == state
    assert list(tmp_path.iterdir()) == [path]  # the staged file was renamed into place


def test_the_service_uses_the_state_only_for_its_own_calibration(tmp_path):
    state = advance(None, np.full(120, 50.0), 119)
    used = state_file.levels_in_use(CALIBRATION, "3", state)
    assert used["0.9"] == (state.levels["0.9"].multiplier, state.levels["0.9"].alpha)
    assert used["0.9"][0] > 1.7
    assert state_file.levels_in_use(CALIBRATION, "4", state)["0.9"] == (1.7, None)
    assert state_file.levels_in_use(CALIBRATION, "3", None)["0.95"] == (2.0, None)


def test_the_reader_parses_again_only_after_a_change(tmp_path):
    path = state_file.state_path(tmp_path)
    reader = state_file.StateReader()
    assert reader.read(path) is None
    first = advance(None, np.zeros(50), 49)
    state_file.write_state(path, first)
    assert reader.read(path) == first
    assert reader.read(path) is reader.read(path)  # unchanged: not parsed again
    second = advance(None, np.full(50, 50.0), 49)
    state_file.write_state(path, second)  # at once: the same modification time, maybe
    assert reader.read(path) == second
    path.unlink()
    assert reader.read(path) is None


def test_an_earlier_check_reports_the_level_of_its_time():
    scores = np.full(200, 50.0)
    early = advance(None, scores, 60)
    late = advance(early, scores, 199)
    reported = {r.level: r.alpha for r in aci.report(late, "return_h4", early.as_of)}
    assert reported["0.9"] == early.levels["0.9"].alpha != late.levels["0.9"].alpha
    assert aci.report(late, "return_h4", 0) == []
