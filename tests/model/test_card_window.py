"""The gate's decision window, a manual move's and monitoring's reference window come from the
model card, not the run's ``interval_end`` tag: a card whose training window end differs from
the tag wins, and a card logged before schema 4 gets the tag's."""

import json
from datetime import datetime, timedelta

import pytest
from mlflow import MlflowClient

from candlecast.modeling import history, registry, training
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.promotion import promote, record_manual_move
from candlecast.modeling.version_card import version_card
from candlecast.monitoring.check import champion_of
from tests.helpers import btc_pair, settings_in
from tests.model.test_promotion import END, LATER, frame

pytestmark = pytest.mark.slow

#: The card's training window end: not the run's tag (END), so a reader of the tag fails.
CARDED = END - timedelta(hours=6)


def rewrite_card(run_id: str, **changes: object) -> None:
    payload = json.loads(str(registry.load_card(run_id).model_dump_json())) | changes
    MlflowClient().log_text(run_id, json.dumps(payload), keys.CARD_ARTIFACT)


def test_windows_are_read_from_the_card(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    result = training.fit_and_log(pair, frame(1, signal=0.8), END, settings)
    run_id = result.challenger.run_id
    card = registry.load_card(run_id)
    assert card is not None and card.interval_end == END.isoformat()  # training writes it
    assert MlflowClient().get_run(run_id).data.tags[keys.INTERVAL_END] == END.isoformat()
    rewrite_card(run_id, interval_end=CARDED.isoformat())

    decision = promote(pair, run_id, result.challenger.model_uri, settings, commit=False)
    assert decision.outcome == "promoted"
    assert (decision.window_start, decision.window_end) == (card.train_start, CARDED.isoformat())
    # the alias moved by hand, no decision recorded: monitoring reads the champion's card
    client = registry.client()
    registry.move_champion(client, pair.stream, decision.champion_version, "test", "test")
    found = champion_of(pair, settings)
    assert found is not None and found.train_end == CARDED
    assert found.train_start == datetime.fromisoformat(card.train_start)
    rows = registry.versions(client, pair.stream)
    assert [row["interval_end"] for row in rows] == [CARDED.isoformat()]

    record_manual_move(pair, decision.champion_version, "manual promote", LATER, settings)
    moved = history.read(pair.stream, settings)[-1]
    assert moved.window_end == CARDED and moved.since == LATER
    in_force = champion_of(pair, settings, as_of=LATER + timedelta(hours=1))
    assert in_force is not None and in_force.train_end == CARDED

    # a card logged before schema 4: its window end is its run's tag
    old = json.loads(str(registry.load_card(run_id).model_dump_json()))
    del old["interval_end"]
    MlflowClient().log_text(run_id, json.dumps({**old, "schema_version": 3}), keys.CARD_ARTIFACT)
    version = client.get_model_version(pair.stream.registered_model, decision.champion_version)
    assert version_card(pair.stream, version).interval_end == END.isoformat()
    assert registry.versions(client, pair.stream)[0]["interval_end"] == END.isoformat()
