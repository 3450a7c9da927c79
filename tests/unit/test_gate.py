"""The promotion decision, table by table: a pure function of evidence."""

import pytest

from candlecast.modeling.gate import (
    Champion,
    Comparison,
    Evidence,
    Outcome,
    Policy,
    decide,
    decide_target,
)

POLICY = Policy(alpha=0.05, min_margin=0.001, metrics=("rmse", "mae"))


def vs(*results: tuple[float, float]) -> tuple[Comparison, ...]:
    """Comparisons on rmse then mae, each given as (relative margin, p-value)."""
    return tuple(
        Comparison(metric, 1.0 - margin, 1.0, p, 500)
        for metric, (margin, p) in zip(POLICY.metrics, results, strict=True)
    )


WIN = vs((0.01, 0.001), (0.01, 0.001))  # significant on both metrics, 1% better
NOISE = vs((0.002, 0.30), (0.001, 0.40))  # better on the sample, not significant
LOSE = vs((-0.01, 0.99), (-0.01, 0.99))
ONE_METRIC = vs((0.01, 0.001), (-0.002, 0.8))  # wins on RMSE, loses on MAE
TINY = vs((0.0005, 0.01), (0.0005, 0.01))  # significant, below the minimum margin

CASES = [
    # evidence -> outcome, a persistence version to register, words in the reason
    (Evidence(WIN), Outcome.PROMOTED, False, "beats persistence"),
    (Evidence(NOISE), Outcome.PERSISTENCE, True, "no demonstrated edge"),
    (Evidence(ONE_METRIC), Outcome.PERSISTENCE, True, "no significant edge"),
    (Evidence(TINY), Outcome.PERSISTENCE, True, "no demonstrated edge"),
    (Evidence(LOSE), Outcome.PERSISTENCE, True, "serving persistence"),
    (Evidence(WIN, Champion.BASELINE), Outcome.PROMOTED, False, "beats persistence"),
    (Evidence(NOISE, Champion.BASELINE), Outcome.PERSISTENCE, False, "no demonstrated edge"),
    (Evidence(WIN, Champion.TRAINED, WIN, WIN), Outcome.PROMOTED, False, "and the champion"),
    (Evidence(WIN, Champion.TRAINED, NOISE, WIN), Outcome.KEPT, False, "but not the champion"),
    (Evidence(WIN, Champion.TRAINED, NOISE, NOISE), Outcome.KEPT, False, "but not the champion"),
    (Evidence(NOISE, Champion.TRAINED, NOISE, WIN), Outcome.KEPT, False, "champion kept"),
    (
        Evidence(NOISE, Champion.TRAINED, NOISE, NOISE),
        Outcome.PERSISTENCE,
        True,
        "no longer beats persistence",
    ),
    # the champion has no data after its training end: not re-scored, and the reason says so
    (Evidence(WIN, Champion.TRAINED), Outcome.PROMOTED, False, "was not compared"),
    (Evidence(NOISE, Champion.TRAINED), Outcome.KEPT, False, "no newer data"),
    # an out-of-order run (a backfill of an earlier interval) never replaces the champion
    (
        Evidence(WIN, Champion.TRAINED, WIN, WIN, champion_trained_on_newer_data=True),
        Outcome.KEPT,
        False,
        "trained on newer data",
    ),
    # ... nor a persistence champion registered from newer data
    (
        Evidence(WIN, Champion.BASELINE, champion_trained_on_newer_data=True),
        Outcome.KEPT,
        False,
        "trained on newer data",
    ),
]


@pytest.mark.parametrize(("evidence", "outcome", "register", "words"), CASES)
def test_decision_table(evidence, outcome, register, words):
    verdict = decide(evidence, POLICY)
    assert verdict.outcome is outcome
    assert verdict.register_baseline is register
    assert words in verdict.reason


def test_reasons_show_scores_margins_and_p_values():
    reason = decide(Evidence(NOISE), POLICY).reason
    assert "rmse 0.998 vs 1 (+0.20%, p=0.3, 500 rows)" in reason
    assert "mae 0.999 vs 1" in reason


@pytest.mark.parametrize(
    ("margin", "p", "passes"),
    [(0.01, 0.049, True), (0.01, 0.05, False), (0.001, 0.01, True), (0.0009, 0.01, False)],
)
def test_a_comparison_needs_both_significance_and_margin(margin, p, passes):
    assert Comparison("rmse", 1 - margin, 1.0, p, 100).passes(POLICY) is passes


def test_the_gate_cannot_be_configured_away():
    from pydantic import ValidationError

    from candlecast.config import GateSection

    for bad in ({"alpha": 1.0}, {"alpha": 0}, {"min_margin": -0.1}, {"metrics": []}):
        with pytest.raises(ValidationError):
            GateSection(**bad)


# -- targets other than the next candle's return: best baseline unless a learned kind beats it


def _versus(score: float, opponent: float, p: float) -> Comparison:
    return Comparison("qlike", score, opponent, p, 500)


@pytest.mark.parametrize(
    ("baselines", "challengers", "champion", "learned"),
    [
        ({"persistence": 1.2, "ewma": 0.9, "har": 0.8}, {}, "har", False),
        (
            {"persistence": 1.2, "ewma": 0.9},
            {"lightgbm": _versus(0.7, 0.9, 0.01)},
            "lightgbm",
            True,
        ),
        # better but not significant: the best baseline stays
        ({"persistence": 1.2, "ewma": 0.9}, {"lightgbm": _versus(0.7, 0.9, 0.2)}, "ewma", False),
        # significant but below the margin
        ({"ewma": 0.9}, {"lightgbm": _versus(0.8999, 0.9, 0.001)}, "ewma", False),
        # of two that pass, the lower loss
        (
            {"ewma": 0.9},
            {"lightgbm": _versus(0.8, 0.9, 0.01), "other": _versus(0.7, 0.9, 0.04)},
            "other",
            True,
        ),
    ],
)
def test_target_gate_serves_the_best_baseline_unless_beaten(
    baselines, challengers, champion, learned
):
    verdict = decide_target(baselines, challengers, Policy(alpha=0.05, min_margin=0.01))
    assert (verdict.champion, verdict.learned) == (champion, learned)
    assert champion in verdict.reason


def test_target_gate_needs_a_baseline():
    with pytest.raises(ValueError, match="baseline"):
        decide_target({}, {}, Policy())
