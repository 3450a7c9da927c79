"""Sequence kinds through the whole model path: trained on windows of rows, logged and
registered in MLflow, re-scored by the gate, exported to ONNX with parity, on real data."""

from datetime import UTC

import pytest
from mlflow import MlflowClient

from candlecast.data.importers import read_history
from candlecast.features.engineering import compute_features, next_return
from candlecast.modeling import registry, training
from candlecast.modeling.onnx_export import export_champion
from candlecast.modeling.promotion import promote
from tests.helpers import BTC_FILE, btc_pair, settings_in

pytestmark = pytest.mark.slow

SMALL = {"window": 8, "epochs": 2, "hidden_size": 8, "num_layers": 1}


def real_frame():
    candles = read_history(BTC_FILE).tail(2400)
    rows = compute_features(candles, "1h", "replay:BTC/USD")
    return rows.merge(next_return(candles, "1h"), on="event_timestamp")


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("lstm", SMALL),
        ("cnn_transformer", {"window": 8, "epochs": 2, "d_model": 8, "nhead": 2, "patch_size": 4}),
    ],
)
def test_a_sequence_kind_trains_registers_and_exports_with_parity(tmp_path, kind, params):
    settings = settings_in(tmp_path)
    pair = btc_pair(training={"train_days": 60, "kinds": [kind], "params": {kind: params}})
    frame = real_frame()
    end = frame["event_timestamp"].max().to_pydatetime().astimezone(UTC)
    result = training.fit_and_log(pair, frame, end, settings)
    run = result.challenger
    assert run.kind == kind and run.metrics["holdout_rmse"] > 0
    decision = promote(pair, run.run_id, run.model_uri, settings)
    client = MlflowClient()
    # whatever the gate decided, make the sequence model champion to export it
    registry.move_champion(client, pair.stream, decision.challenger_version, "test", "test")
    exported = export_champion(pair, settings)
    assert (exported.kind, exported.window) == (kind, params["window"])
    assert exported.parity_max_abs_diff <= 1e-5 and exported.parity_max_rel_diff <= 1e-4
    assert exported.parity_rows > 0 and exported.interval_half_width > 0
