"""The model card's training window end (schema 4) and interval bins (schema 5): they
round-trip, an older card still loads, and a card logged without a window end gets its run's
(the one place that reads the run's tags)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import onnx
import pytest

from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling import version_card
from candlecast.modeling.card import SCHEMA_VERSION, IntervalCalibration, ModelCard
from tests.helpers import btc_pair, model_card

END = "2024-02-10T01:00:00+00:00"
TAGGED = "2024-02-11T00:00:00+00:00"  # what the run's tag says, when it differs


def schema_3(card: ModelCard) -> str:
    """``card`` as a candlecast before schema 4 stored it."""
    payload = json.loads(card.model_dump_json())
    del payload["interval_end"]
    return json.dumps({**payload, "schema_version": 3})


def run(tags: dict[str, str], params: dict[str, str] | None = None) -> SimpleNamespace:
    """An MLflow run as the card helpers read it."""
    return SimpleNamespace(
        info=SimpleNamespace(run_id="r1"),
        data=SimpleNamespace(tags=tags, params=params or {}, metrics={}),
    )


def test_a_card_round_trips_with_its_training_window_end():
    card = model_card(schema_version=SCHEMA_VERSION, interval_end=END)
    assert SCHEMA_VERSION == 5 and card.interval_end == END
    assert ModelCard.model_validate_json(card.model_dump_json()) == card
    embedded = card.embed(onnx.ModelProto())
    assert ModelCard.from_onnx(embedded).interval_end == END


def test_a_schema_3_card_loads_without_one_and_a_schema_4_card_needs_it():
    card = ModelCard.model_validate_json(schema_3(model_card(interval_end=END)))
    assert card.schema_version == SCHEMA_VERSION and card.interval_end == ""
    assert card.holdout_end == "2024-02-10T00:00:00+00:00"  # the rest as it was
    payload = json.loads(model_card(schema_version=4, interval_end=END).model_dump_json())
    del payload["interval_end"]
    with pytest.raises(ValueError, match="interval_end"):
        ModelCard.model_validate(payload)


def test_a_card_round_trips_with_volatility_bins_and_a_schema_4_card_loads_without():
    calibration = IntervalCalibration(
        source="qlike_log_linear",
        columns=["ewma_var", "rv_24", "rv_168"],
        weights=[0.5, 0.3, 0.2],
        intercept=0.1,
        multipliers={"0.9": 1.6},
        bin_column="rv_24",
        bin_edges=[1e-4, 3e-4],
        bin_multipliers=[{"0.9": 1.9}, {"0.9": 1.6}, {"0.9": 1.4}],
    )
    card = model_card(intervals=calibration.model_dump())
    embedded = card.embed(onnx.ModelProto())
    assert ModelCard.from_onnx(embedded) == card and card.intervals == calibration
    payload = json.loads(card.model_dump_json())
    for name in ("bin_column", "bin_edges", "bin_multipliers"):
        del payload["intervals"][name]
    older = ModelCard.model_validate({**payload, "schema_version": 4})
    assert older.schema_version == SCHEMA_VERSION and older.intervals is not None
    assert older.intervals.bin_column is None and older.intervals.multipliers == {"0.9": 1.6}
    with pytest.raises(ValueError, match="schema 6"):
        ModelCard.model_validate({**payload, "schema_version": 6})


def test_a_schema_3_card_gets_its_runs_window_end(monkeypatch):
    stored = schema_3(model_card(interval_end=END))
    monkeypatch.setattr(
        version_card.registry, "load_card", lambda run_id: ModelCard.model_validate_json(stored)
    )
    found = version_card.run_card(btc_pair().stream, run({keys.INTERVAL_END: TAGGED}))
    assert found.interval_end == TAGGED
    assert found.train_start == "2024-01-01T00:00:00+00:00"  # the card's, not rebuilt


def test_a_schema_4_cards_window_end_wins_over_its_runs_tag(monkeypatch):
    card = model_card(schema_version=4, interval_end=END)
    monkeypatch.setattr(version_card.registry, "load_card", lambda run_id: card)
    found = version_card.run_card(btc_pair().stream, run({keys.INTERVAL_END: TAGGED}))
    assert found.interval_end == END


def test_a_run_logged_before_cards_gets_its_window_end_from_its_tag(monkeypatch):
    monkeypatch.setattr(version_card.registry, "load_card", lambda run_id: None)
    logged = run(
        {keys.INTERVAL_END: TAGGED, keys.KIND: "lightgbm"},
        {keys.FEATURES: "ret_1,ret_2", keys.TRAIN_START: "2024-01-01T00:00:00+00:00"},
    )
    found = version_card.run_card(btc_pair().stream, logged)
    assert (found.interval_end, found.train_start) == (TAGGED, "2024-01-01T00:00:00+00:00")
    assert found.kind == "lightgbm" and found.features == ["ret_1", "ret_2"]
