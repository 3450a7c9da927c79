"""The promotion decision, table by table: a pure function of scores."""

import pytest

from candlecast.modeling.gate import Outcome, Scores, decide

CASES = [
    # challenger, persistence, champion, champion is persistence -> outcome, new baseline
    (0.9, 1.0, None, False, Outcome.PROMOTED, False),  # first model, beats persistence
    (1.1, 1.0, None, False, Outcome.PERSISTENCE, True),  # first model, loses to persistence
    (1.0, 1.0, None, False, Outcome.PERSISTENCE, True),  # a tie is not a win
    (0.8, 1.0, 0.9, False, Outcome.PROMOTED, False),  # beats both
    (0.95, 1.0, 0.9, False, Outcome.KEPT, False),  # beats persistence, not the champion
    (0.9, 1.0, 0.9, False, Outcome.KEPT, False),  # ties the champion: the champion stays
    (1.2, 1.0, 0.9, False, Outcome.KEPT, False),  # champion still skilled, challenger not
    (1.2, 1.0, 1.1, False, Outcome.PERSISTENCE, True),  # nobody beats persistence
    (0.9, 1.0, 1.0, True, Outcome.PROMOTED, False),  # persistence champion is beaten
    (1.1, 1.0, 1.0, True, Outcome.PERSISTENCE, False),  # persistence stays, no new version
    (0.9, 1.0, 1.3, False, Outcome.PROMOTED, False),  # champion decayed below persistence
]


@pytest.mark.parametrize(
    ("challenger", "persistence", "champion", "baseline", "outcome", "register"), CASES
)
def test_decision_table(challenger, persistence, champion, baseline, outcome, register):
    verdict = decide(Scores(challenger, persistence, champion), "rmse", baseline)
    assert verdict.outcome is outcome
    assert verdict.register_baseline is register
    assert f"challenger rmse={challenger:.6g}" in verdict.reason
    assert ("champion rmse=" in verdict.reason) == (champion is not None)


def test_reasons_say_why():
    assert "beats persistence and the champion" in decide(Scores(0.5, 1.0), "mae").reason
    assert "does not beat it" in decide(Scores(0.95, 1.0, 0.9), "mae").reason
    assert "no trained model beats persistence" in decide(Scores(2.0, 1.0), "mae").reason
