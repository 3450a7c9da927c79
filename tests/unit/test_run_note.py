"""The note a train run gets: the promotion decision in one line, for the grid."""

import pytest

from candlecast.orchestration.notes import NOTE_LIMIT, decision_note

DECISION = {
    "champion_version": "3",
    "champion_kind": "lightgbm",
    "challenger_version": "3",
    "challenger_kind": "lightgbm",
    "reason": "beats persistence on rmse (p=0.01)",
    "dry_run": False,
}


@pytest.mark.parametrize(
    ("outcome", "version", "note"),
    [
        ("promoted", "3", "promoted lightgbm v3: beats persistence on rmse (p=0.01)"),
        ("kept_champion", "2", "kept champion lightgbm v2: beats persistence on rmse (p=0.01)"),
        ("persistence", "1", "persistence is champion (v1): beats persistence on rmse (p=0.01)"),
    ],
)
def test_the_note_names_the_outcome_the_champion_and_the_reason(outcome, version, note):
    decision = DECISION | {"outcome": outcome, "champion_version": version}
    assert decision_note(decision) == note


def test_a_dry_run_says_nothing_was_promoted():
    dry = DECISION | {"outcome": "persistence", "dry_run": True, "champion_version": ""}
    assert decision_note(dry).startswith("dry run, nothing promoted: persistence is champion: ")


def test_a_long_reason_is_cut_to_airflows_limit():
    assert (
        len(decision_note(DECISION | {"outcome": "promoted", "reason": "x" * 5000})) == NOTE_LIMIT
    )
