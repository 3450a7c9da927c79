"""Promotion and ``candlecast models`` read a version's kind and fitted window from its model
card, not from the ``kind`` and ``data.last_event`` tags: versions whose tags disagree with
their cards are read by their cards. (The gate's outcome and a champion move's reason stay
tags, read through ``registry.promotion_record``: events after training, not card facts.)"""

from datetime import timedelta

import pytest
from mlflow import MlflowClient

from candlecast.modeling import history, registry, training
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.kinds import BASELINE
from candlecast.modeling.promotion import promote, record_manual_move
from tests.helpers import btc_pair, settings_in
from tests.model.test_promotion import END, LATER, frame

pytestmark = pytest.mark.slow

#: What the lying tags say: the baseline kind, and a served fit that ended long ago.
LYING_KIND = BASELINE
LYING_LAST_EVENT = (END - timedelta(days=400)).isoformat()


def test_kind_and_fitted_window_come_from_the_card_when_tags_disagree(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    name = pair.stream.registered_model
    first = training.fit_and_log(pair, frame(6, signal=0.8, end=LATER), LATER, settings)
    client = MlflowClient()  # of the store training configured
    champion = promote(pair, first.challenger.run_id, first.challenger.model_uri, settings)
    assert (champion.outcome, champion.challenger_kind) == ("promoted", "lightgbm")
    # the champion's run and version tags lie about its kind and where its fit ended
    client.set_tag(first.challenger.run_id, keys.KIND, LYING_KIND)
    client.set_tag(first.challenger.run_id, keys.DATA_LAST_EVENT, LYING_LAST_EVENT)
    client.set_model_version_tag(name, champion.challenger_version, keys.KIND, LYING_KIND)
    # an earlier interval's challenger, whose run's kind tag lies too
    second = training.fit_and_log(pair, frame(7, signal=0.9), END, settings)
    client.set_tag(second.challenger.run_id, keys.KIND, LYING_KIND)

    decision = promote(pair, second.challenger.run_id, second.challenger.model_uri, settings)

    # the champion's card: a learned kind fitted on newer data, which an older interval
    # never replaces (read by the tags: a baseline fitted long ago, so judged on fresh rows)
    assert decision.outcome == "kept_champion" and "newer data" in decision.reason
    assert decision.evidence["champion"] == "trained"
    assert decision.evidence["champion_trained_on_newer_data"] is True
    assert (decision.challenger_kind, decision.champion_kind) == ("lightgbm", "lightgbm")
    version = client.get_model_version(name, decision.challenger_version)
    assert version.tags[keys.KIND] == "lightgbm"  # registered under its card's kind

    # candlecast models: kinds and scores from the cards, outcomes from promotion_record
    client.set_model_version_tag(name, decision.challenger_version, keys.KIND, LYING_KIND)
    rows = registry.versions(registry.client(), pair.stream)
    assert [row["kind"] for row in rows] == ["lightgbm", "lightgbm"]
    assert [row["outcome"] for row in rows] == ["kept_champion", "promoted"]
    card = registry.load_card(second.challenger.run_id)
    assert card is not None and rows[0]["holdout_rmse"] == card.scores["rmse"]

    # a manual move records the version's card's kind in the decision history
    record_manual_move(pair, decision.challenger_version, "manual promote", LATER, settings)
    assert history.read(pair.stream, settings)[-1].kind == "lightgbm"
