"""ONNX export: parity with the native model, the persistence graph, and the parity gate."""

from datetime import UTC, datetime

import numpy as np
import pytest

from candlecast.errors import ParityError
from candlecast.modeling import onnx_export as export
from candlecast.modeling import registry, training
from candlecast.modeling.card import ModelCard
from candlecast.modeling.kinds.baselines import Persistence
from candlecast.modeling.promotion import promote
from tests.helpers import btc_pair, settings_in
from tests.model.test_promotion import END, frame

pytestmark = pytest.mark.slow  # trains models in MLflow / reads Feast


def test_lightgbm_champion_exports_with_parity(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    result = training.fit_and_log(pair, frame(5, signal=0.8), END, settings).challenger
    promote(pair, result.run_id, result.model_uri, settings)
    exported = export.export_champion(pair, settings)
    assert exported.kind == "lightgbm"
    assert exported.parity_rows == 600
    assert exported.parity_max_abs_diff <= settings.parity_tolerance
    folder = tmp_path / "models" / "replay_btc_usd_1h" / f"v{exported.version}"
    assert (folder / "model.onnx").exists()
    assert export.ExportedModel.load(folder) == exported
    assert exported.parity_max_rel_diff <= 1e-4
    # serving needs nothing but the file: what it reads is the card in the ONNX metadata
    import onnx

    card = ModelCard.from_onnx(onnx.load(folder / "model.onnx"))
    assert card == exported.card and card.version == exported.version
    assert (card.window, card.kind, card.target_key) == (1, "lightgbm", "return_h1")
    assert card.features[0] == "ret_1" and card.run_id == result.run_id
    # the training run's card, completed with the version and the gate's decision
    trained = registry.load_card(result.run_id)
    assert trained is not None and trained.version is None
    assert card.features == trained.features and card.scores == trained.scores
    assert card.train_start == trained.train_start and card.decision != trained.decision
    assert card.scores["rmse_ratio"] == pytest.approx(
        card.scores["rmse"] / card.baseline_scores["rmse"]
    )
    # a 90% conformal interval from the holdout fit's out-of-sample residuals
    assert exported.interval_coverage == 0.9 and 0 < exported.interval_half_width < 0.05


def test_persistence_graph_answers_zero():
    graph = Persistence(["a", "b", "c", "d"]).to_onnx()
    out = export.run_onnx(graph.SerializeToString(), np.random.default_rng(0).normal(size=(7, 4)))
    assert out.shape == (7,) and not out.any()


def test_parity_failure_stops_the_export(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    result = training.fit_and_log(pair, frame(6, signal=0.8), END, settings).challenger
    promote(pair, result.run_id, result.model_uri, settings)
    strict = settings_in(tmp_path, parity_tolerance=0.0)
    # float32 ONNX trees cannot match float64 LightGBM exactly on every row
    with pytest.raises(ParityError, match="ONNX differs"):
        export.export_champion(pair, strict)
    assert not list((tmp_path / "models").glob("*/*/model.onnx"))
    assert datetime.now(UTC)


def test_a_champion_trained_before_cards_exports_with_the_card_its_run_recorded(tmp_path):
    """A run logged before training wrote cards (here: its card.json removed) exports with a
    card built from what the run recorded, the same card training writes today."""
    settings, pair = settings_in(tmp_path), btc_pair()
    result = training.fit_and_log(pair, frame(5, signal=0.8), END, settings).challenger
    promote(pair, result.run_id, result.model_uri, settings)
    trained = registry.load_card(result.run_id)
    assert trained is not None
    found = [p for p in tmp_path.rglob("card.json") if result.run_id in str(p)]
    assert len(found) == 1
    found[0].unlink()
    assert registry.load_card(result.run_id) is None
    card = export.export_champion(pair, settings).card
    same = ("kind", "features", "window", "train_start", "holdout_start", "holdout_end")
    assert {k: getattr(card, k) for k in same} == {k: getattr(trained, k) for k in same}
    assert card.scores == pytest.approx(trained.scores)
    assert card.baseline_scores == pytest.approx(trained.baseline_scores)
    assert card.data_version == trained.data_version and card.version is not None
