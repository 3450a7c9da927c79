"""A deployed model whose ONNX file changed after export is refused on every load: a valid
graph with one constant edited parses and runs, so only its recorded ``onnx_sha256`` tells.

Real files in the test session's BentoML store and a real export folder; the ONNX graph is a
small one built with ``onnx.helper`` (what matters is that the tampered file is valid ONNX).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from candlecast.errors import TamperedModelError
from candlecast.serving.loaded import ModelLoadError, load_model
from candlecast.serving.modelstore import bentoml_store
from tests.helpers import deploy_record, model_card


def graph(constant: float) -> bytes:
    """``y = sum(x) + constant``: a valid model whose answer a tamperer can shift."""
    bias = numpy_helper.from_array(np.array([constant], np.float32), "bias")
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, axes=[1]),
        helper.make_node("Add", ["total", "bias"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "tiny",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
            initializer=[bias],
        ),
        opset_imports=[helper.make_opsetid("", 12)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture
def deployed(home):
    bentoml_store()
    import bentoml

    with bentoml.models.create("integrity_test_model") as model:
        deploy_record(Path(model.path_of("")), graph(0.0), model_card())
    yield bentoml.models.get(model.tag)
    bentoml.models.delete(model.tag)


def test_an_untouched_model_loads_and_answers(deployed):
    loaded = load_model(deployed)
    out = loaded.session.run(None, {"x": np.ones((1, 2), np.float32)})[0]
    assert out.tolist() == [2.0]


def test_a_model_with_an_edited_constant_is_refused_naming_the_file(deployed):
    Path(deployed.path_of("model.onnx")).write_bytes(graph(0.05))  # valid ONNX, other answer
    with pytest.raises(TamperedModelError) as refused:
        load_model(deployed)
    message = str(refused.value)
    assert f"{deployed.tag}/model.onnx" in message and "onnx_sha256" in message
    assert "\n" not in message and str(Path(deployed.path_of(""))) not in message


def test_a_model_without_a_recorded_hash_is_refused(deployed):
    meta_path = Path(deployed.path_of("export.json"))
    meta = json.loads(meta_path.read_text())
    del meta["onnx_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(TamperedModelError, match="no recorded onnx_sha256"):
        load_model(deployed)


def test_a_model_deployed_before_cards_names_the_command_that_redeploys_it(home):
    """A home deployed by an older candlecast (``metadata.json``, no card) is not guessed at:
    its load fails with one line naming the command that exports and deploys it again."""
    bentoml_store()
    import bentoml

    meta = {"model_name": "m", "version": "3", "kind": "lightgbm", "features": ["a", "b"]}
    labels = {"stream": "binance_btc_usdt_1h", "kind": "lightgbm", "version": "3"}
    with bentoml.models.create("integrity_old_model", labels=labels) as model:
        Path(model.path_of("model.onnx")).write_bytes(graph(0.0))
        Path(model.path_of("metadata.json")).write_text(json.dumps(meta))
    try:
        with pytest.raises(ModelLoadError) as refused:
            load_model(bentoml.models.get(model.tag))
    finally:
        bentoml.models.delete(model.tag)
    message = str(refused.value)
    assert "no model card" in message and "\n" not in message
    assert (
        "candlecast promote --pair BTC/USDT --exchange binance --timeframe 1h --version 3"
        in message
    )


def test_a_record_whose_card_differs_from_the_onnx_files_is_refused(deployed):
    record = Path(deployed.path_of("export.json"))
    meta = json.loads(record.read_text())
    meta["card"]["version"] = "2"  # the record says v2, the file's own card v1
    record.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=r"card in model\.onnx differs"):
        load_model(deployed)


def test_a_tampered_export_is_not_deployed_again(tmp_path):
    from candlecast.modeling.onnx_export import ExportedModel

    deploy_record(tmp_path, graph(0.0), model_card())
    recorded = hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest()
    assert ExportedModel.load(tmp_path).onnx_sha256 == recorded
    (tmp_path / "model.onnx").write_bytes(graph(0.05))
    with pytest.raises(TamperedModelError, match=r"model\.onnx: sha256"):
        ExportedModel.load(tmp_path)


def test_a_served_target_model_with_an_edited_constant_is_refused(tmp_path):
    """A (target, horizon) champion carries its card inside the ONNX file, so its hash is
    recorded beside it at export; a file changed after that is refused on load."""
    from candlecast.modeling.card import ModelCard
    from candlecast.modeling.target_export import serve_copy
    from candlecast.serving import targets as served_targets
    from candlecast.settings import Settings
    from tests.helpers import btc_pair

    settings, pair = Settings(home=tmp_path), btc_pair()
    target = served_targets.configured_targets(pair)[0]
    card = ModelCard(
        stream=pair.key, exchange=pair.exchange, symbol=pair.symbol, timeframe=pair.timeframe,
        target=target.name, horizon=target.horizon, target_key=target.key, outputs=["y"],
        kind="lightgbm", registered_model="m", version="1", features=["a", "b"],
        train_start="", train_end="", holdout_start="", holdout_end="", data_version="",
        scores={}, baseline="zero", baseline_scores={}, decision="test",
    )  # fmt: skip
    folder = pair.stream.target_dir(settings.paths.models, target.key)
    served = serve_copy(folder, card, onnx.load_from_string(graph(0.0)))
    assert [s.target.key for s in served_targets.load(pair, settings, {})] == [target.key]

    tampered = card.embed(onnx.load_from_string(graph(0.05))).SerializeToString()
    (served.resolve() / "model.onnx").write_bytes(tampered)
    with pytest.raises(TamperedModelError) as refused:
        served_targets.load(pair, settings, {})
    assert f"{target.key}/v1/model.onnx" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)
