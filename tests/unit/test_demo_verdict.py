"""The demo's verdict per stream: what is served and why, from the gate's own sentences."""

from __future__ import annotations

import copy

from rich.console import Console

from candlecast.cli.verdict import stream_verdict
from candlecast.modeling.gate import (
    Champion,
    Comparison,
    Evidence,
    Policy,
    decide,
    decide_target,
)
from tests.unit.test_demo_table import ANSWER

POLICY = Policy()


def _answer(decisions: dict[str, str]) -> dict:
    answer = copy.deepcopy(ANSWER)
    for target in answer["targets"]:
        target["decision"] = decisions[target["target"]]
    return answer


def _lost() -> str:
    """The return target's reason when no learned kind is significantly better."""
    challengers = {"lightgbm": Comparison("rmse", 0.0101, 0.0102, 0.41, 480)}
    return decide_target({"persistence": 0.0102, "zero": 0.0103}, challengers, POLICY).reason


def _won() -> str:
    """The volatility target's reason when LightGBM beats the best baseline."""
    challengers = {"lightgbm": Comparison("qlike", 0.57, 1.0, 0.001, 480)}
    return decide_target({"persistence": 1.0, "ewma": 1.1}, challengers, POLICY).reason


def test_every_target_says_what_is_served_and_why():
    main = decide(
        Evidence((Comparison("rmse", 0.0101, 0.0102, 0.41, 480),), Champion.NONE), POLICY
    ).reason
    lines = stream_verdict(_answer({"return": _lost(), "volatility": _won()}), main)
    assert lines == [
        "return h1: persistence served - the challenger did not beat it on every gate metric "
        "(weakest: RMSE 0.98% lower, p=0.41)",
        "return h24: persistence served - no learned kind beat it significantly (best p=0.41)",
        "volatility h24: lightgbm served, QLIKE 0.57x persistence (p=0.001, 480 rows)",
    ]


def test_a_main_challenger_significant_on_one_metric_only_is_shown_by_the_other():
    # the gate asks every metric to pass: a small p on RMSE is not "beat it"
    main = decide(
        Evidence(
            (
                Comparison("rmse", 0.0099, 0.0100, 0.009, 480),
                Comparison("mae", 0.01001, 0.0100, 0.62, 480),
            )
        ),
        POLICY,
    ).reason
    line = stream_verdict(_answer({"return": _lost(), "volatility": _won()}), main)[0]
    assert line == (
        "return h1: persistence served - the challenger did not beat it on every gate metric "
        "(weakest: MAE 0.10% higher, p=0.62)"
    )


def test_a_promoted_main_model_shows_its_ratio_to_persistence():
    main = decide(
        Evidence(
            (
                Comparison("rmse", 0.0097, 0.0100, 0.01, 480),
                Comparison("mae", 0.0090, 0.0100, 0.02, 480),
            )
        ),
        POLICY,
    ).reason
    answer = _answer({"return": _lost(), "volatility": _won()})
    answer["model"] = {"kind": "lightgbm", "version": "4"}
    assert stream_verdict(answer, main)[0] == (
        "return h1: lightgbm served, RMSE 0.97x persistence (p=0.01, 480 rows)"
    )


def test_a_kept_champion_is_shown_by_its_own_scores_not_the_challengers():
    main = decide(
        Evidence(
            (Comparison("rmse", 0.0101, 0.0102, 0.41, 480),),
            Champion.TRAINED,
            champion_vs_persistence=(Comparison("rmse", 0.0095, 0.0100, 0.001, 300),),
        ),
        POLICY,
    ).reason
    answer = _answer({"return": _lost(), "volatility": _won()})
    answer["model"] = {"kind": "lightgbm", "version": "3"}
    assert stream_verdict(answer, main)[0] == (
        "return h1: lightgbm served (champion kept), RMSE 0.95x persistence (p=0.001, 300 rows)"
    )


def test_an_unknown_reason_still_says_what_is_served_and_untrained_targets_are_named():
    answer = _answer({"return": _lost(), "volatility": _won()})
    answer["targets_not_trained"] = ["volatility_h4"]
    lines = stream_verdict(answer, None)
    assert lines[0] == "return h1: persistence served"
    assert lines[-1] == "volatility_h4: nothing served yet (not trained)"


def test_no_verdict_is_cut_at_80_columns():
    console = Console(width=80, record=True, color_system=None)
    for line in stream_verdict(_answer({"return": _lost(), "volatility": _won()}), _lost()):
        console.print(f"  {line}", overflow="fold")
    text = console.export_text()
    assert "…" not in text
    assert "0.57x persistence" in " ".join(text.split())
