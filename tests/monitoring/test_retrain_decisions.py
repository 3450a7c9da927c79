"""The retrain decision, table by table: triggers, thresholds, the cooldown."""

from datetime import UTC, datetime, timedelta

import pytest

from candlecast.config import MonitoringSection
from candlecast.monitoring.decisions import (
    Evidence,
    ShadowEvidence,
    Thresholds,
    decide,
    triggers,
)

NOW = datetime(2022, 3, 1, tzinfo=UTC)
LIMITS = Thresholds()  # drift share 0.5, RMSE ratio 1.05 over >= 100 forecasts, 24 h cooldown


def shadow(count: int, beats: bool) -> Evidence:
    return Evidence(shadows=(ShadowEvidence("7", ("5",), count, 0.9, 0.01, beats),))


def drift(share: float, features: int = 10) -> Evidence:
    drifted = tuple(f"f{i}" for i in range(round(share * features)))
    return Evidence(drift_share=share, drifted_features=drifted, features=features)


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (Evidence(), []),
        (drift(0.4), []),
        (drift(0.5), ["data drift"]),
        (drift(0.9), ["data drift"]),
        (Evidence(prediction_drifted=False), []),
        (Evidence(prediction_drifted=True), ["prediction drift"]),
        (Evidence(rmse_ratio=1.05, forecasts=500), []),
        (Evidence(rmse_ratio=1.06, forecasts=500), ["decay"]),
        (Evidence(rmse_ratio=2.0, forecasts=99), []),  # too few forecasts to judge
        (Evidence(rmse_ratio=2.0, forecasts=100), ["decay"]),
        (Evidence(rmse_ratio=0.9, forecasts=1000), []),
        (shadow(100, beats=True), ["shadow challenger v7 beats champion v5 on 100 realized"]),
        (shadow(99, beats=True), []),  # too few realized rows to judge
        (shadow(1000, beats=False), []),  # not significant, or not by the margin
        (
            Evidence(0.7, ("a", "b"), 3, prediction_drifted=True, rmse_ratio=1.2, forecasts=200),
            ["data drift", "prediction drift", "decay"],
        ),
    ],
)
def test_triggers(evidence, expected):
    found = triggers(evidence, LIMITS)
    assert [reason.split(":")[0].split(" candles")[0] for reason in found] == expected


@pytest.mark.parametrize(
    ("evidence", "last_request", "retrain", "rate_limited"),
    [
        (drift(0.2), None, False, False),
        (drift(0.6), None, True, False),
        (drift(0.6), NOW - timedelta(hours=23, minutes=59), False, True),
        (drift(0.6), NOW - timedelta(hours=24), True, False),
        (drift(0.6), NOW - timedelta(days=30), True, False),
        (drift(0.2), NOW - timedelta(hours=1), False, False),  # nothing to limit
    ],
)
def test_decide_with_cooldown(evidence, last_request, retrain, rate_limited):
    decision = decide(evidence, LIMITS, last_request, NOW)
    assert (decision.retrain, decision.rate_limited) == (retrain, rate_limited)
    if retrain:
        assert decision.reason.startswith("data drift: 6 of 10 input features drifted")
    if rate_limited:
        assert "rate limited" in decision.reason and "data drift" in decision.reason


def test_per_pair_thresholds_come_from_the_config():
    section = MonitoringSection(
        drift_share=0.3, retrain_cooldown_hours=0, max_rmse_ratio=1.2, min_forecasts=10
    )
    limits = Thresholds.of(section)
    assert limits.cooldown == timedelta(0)
    assert decide(drift(0.3), limits, NOW, NOW).retrain  # no cooldown: asks every time
    assert not decide(Evidence(rmse_ratio=1.1, forecasts=50), limits, None, NOW).retrain
    assert decide(Evidence(rmse_ratio=1.3, forecasts=10), limits, None, NOW).retrain


@pytest.mark.parametrize(
    ("coverage", "fires"),
    [
        ((("return_h4", 0.72, 300),), True),  # collapsed, judged on enough forecasts
        ((("return_h4", 0.72, 20),), False),  # too few to judge
        ((("return_h4", 0.85, 300),), False),  # above the floor
        ((("return_h4", 0.9, 300), ("return_h24", 0.5, 200)), True),
    ],
)
def test_a_coverage_collapse_is_a_retrain_reason(coverage, fires):
    found = triggers(Evidence(coverage=coverage), Thresholds())
    assert bool(found) == fires
    if fires:
        assert "coverage collapse" in found[0] and "< 80%" in found[0]
