"""The PyTorch sequence kinds (``lstm``, ``cnn_transformer``) on real BTC/USD hourly features:
forecasts, ONNX parity, determinism, a scaler fitted on training rows only, the MLflow round
trip, parameter checks, and a registry that still imports without torch."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from candlecast.config import TrainingSection
from candlecast.errors import ConfigError
from candlecast.features.engineering import FEATURE_COLUMNS, compute_features, next_return
from candlecast.modeling.kinds import check_training, get_kind, kind_names
from candlecast.modeling.kinds.base import window_inputs
from candlecast.modeling.onnx_export import run_onnx

pytestmark = pytest.mark.slow

HOUR_MS = 3_600_000
KINDS = ["lstm", "cnn_transformer"]
SCALER = ["x_mean", "x_std", "y_mean", "y_std"]
#: Small and quick: the defaults are exercised by the fit-time measurement, not here.
SMALL = {
    "lstm": {"window": 12, "hidden_size": 16, "epochs": 2},
    "cnn_transformer": {"window": 12, "d_model": 16, "nhead": 2, "epochs": 2},
}


@pytest.fixture(scope="module")
def frame(btc_candles: pd.DataFrame) -> pd.DataFrame:
    """About 1,500 hours of feature rows with their next-candle target."""
    candles = btc_candles.iloc[-1500:].reset_index(drop=True)
    features = compute_features(candles, "1h", "cryptodatadownload:BTC/USD")
    return features.merge(next_return(candles, "1h"), on="event_timestamp")


def model(name: str, **overrides: object):
    kind = get_kind(name)
    return kind(FEATURE_COLUMNS, kind.Params(**{**SMALL[name], **overrides}))


def inputs(frame: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Usable windows, their targets, and how many of them (the first 80%) are training rows."""
    x, usable = window_inputs(frame, FEATURE_COLUMNS, window, HOUR_MS)
    return x[usable], frame["target"].to_numpy()[usable], int(usable.sum() * 0.8)


@pytest.fixture(scope="module", params=KINDS)
def fitted(request, frame):
    kind = model(request.param)
    x, y, n = inputs(frame, kind.window)
    kind.fit(x[:n], y[:n])
    return kind, x, y, n


def test_the_registry_knows_the_torch_kinds_and_checks_their_params():
    assert {"lstm", "cnn_transformer"} <= set(kind_names())
    check_training(TrainingSection(kinds=["lstm"], params={"lstm": {"window": 12}}))
    check_training(TrainingSection(kinds=["cnn_transformer"], params={"cnn_transformer": {}}))
    with pytest.raises(ConfigError, match="hiden_size"):
        check_training(TrainingSection(kinds=["lstm"], params={"lstm": {"hiden_size": 8}}))
    with pytest.raises(ConfigError, match="patch_size"):
        check_training(TrainingSection(params={"cnn_transformer": {"window": 10}}))
    assert get_kind("lstm").Params().window == 24 == get_kind("cnn_transformer").Params().window


def test_the_registry_imports_without_torch():
    code = (
        "import sys; from candlecast.modeling.kinds import kind_names; "
        "assert {'lstm', 'cnn_transformer'} <= set(kind_names()); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_forecasts_are_finite_float64_returns(fitted):
    kind, x, _, n = fitted
    predicted = kind.predict(x[n:])
    assert predicted.shape == (len(x) - n,) and predicted.dtype == np.float64
    assert np.isfinite(predicted).all()
    assert predicted.std() > 0  # not a constant: the windows reach the output
    assert kind.spec.window == kind.window == 12


def test_onnx_gives_the_same_forecasts_at_any_batch_size(fitted):
    kind, x, _, n = fitted
    payload = kind.to_onnx().SerializeToString()
    native = kind.predict(x[n:])
    onnx = run_onnx(payload, x[n:])
    assert np.max(np.abs(onnx - native)) < 1e-5
    assert np.max(np.abs(onnx - native)) / np.max(np.abs(native)) < 1e-4
    single = run_onnx(payload, x[n : n + 1])
    assert single.shape == (1,) and abs(single[0] - native[0]) < 1e-5


def test_inputs_of_another_width_are_refused(fitted):
    kind, x, _, _ = fitted
    with pytest.raises(ValueError, match="window 12"):
        kind.predict(x[:5, :-1])
    with pytest.raises(RuntimeError, match="not fitted"):
        model(kind.name).predict(x[:5])


@pytest.mark.parametrize("name", KINDS)
def test_a_seed_gives_the_same_model_and_another_seed_another(frame, name):
    import torch

    threads = torch.get_num_threads()
    x, y, n = inputs(frame, 12)
    runs = []
    for seed in (7, 7, 8):
        kind = model(name, seed=seed, epochs=1)
        kind.fit(x[:n], y[:n])
        runs.append(kind.predict(x[n:]))
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])
    assert torch.get_num_threads() == threads  # the fit's thread limit does not leak
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("name", KINDS)
def test_the_scaler_sees_training_rows_only(frame, name):
    x, y, n = inputs(frame, 12)
    n_train = n - math.ceil(n * 0.15)  # the last 15% of the fit rows are the validation fold
    kind = model(name, epochs=1)
    kind.fit(x[:n], y[:n])
    state = kind.net.state_dict()
    scaler = {key: state[key].numpy().copy() for key in SCALER}
    rows = x[:n_train, -len(FEATURE_COLUMNS) :]
    assert np.allclose(scaler["x_mean"], rows.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert np.allclose(scaler["x_std"], rows.std(axis=0), rtol=1e-4)
    assert np.isclose(scaler["y_mean"][0], y[:n_train].mean(), rtol=1e-4, atol=1e-9)
    assert np.isclose(scaler["y_std"][0], y[:n_train].std(), rtol=1e-4)

    shifted = x.copy()
    shifted[n_train:] *= 1000.0  # validation fold and holdout: must not move the scaler
    again = model(name, epochs=1)
    again.fit(shifted[:n], y[:n])
    for key, value in scaler.items():
        assert np.array_equal(again.net.state_dict()[key].numpy(), value), key
    shifted[:n_train] *= 2.0  # the training rows do move it
    moved = model(name, epochs=1)
    moved.fit(shifted[:n], y[:n])
    assert not np.allclose(moved.net.state_dict()["x_std"].numpy(), scaler["x_std"])


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A throwaway MLflow tracking store (SQLite) for this module's runs."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    # Artifacts beside the database (a SQLite store would put them in ./mlruns otherwise).
    mlflow.create_experiment("torch-kinds", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment("torch-kinds")
    yield
    mlflow.set_tracking_uri(previous)


def test_a_logged_model_loads_with_the_same_forecasts(fitted, tracking):
    import mlflow

    kind, x, _, n = fitted
    columns = [f"f{i}" for i in range(x.shape[1])]
    with mlflow.start_run():
        uri = kind.log_model(pd.DataFrame(x[n:], columns=columns))
    version = mlflow.register_model(uri, f"test-{kind.name}")
    loaded = type(kind).load(f"models:/test-{kind.name}/{version.version}", FEATURE_COLUMNS)
    assert loaded.params == kind.params and loaded.window == kind.window
    native = kind.predict(x[n:])
    assert np.array_equal(loaded.predict(x[n:]), native)
    onnx = run_onnx(loaded.to_onnx().SerializeToString(), x[n:])
    assert np.max(np.abs(onnx - native)) < 1e-5
    # The logged PyTorch flavour (torch.export graph) serves the same forecasts, too.
    pyfunc = mlflow.pyfunc.load_model(uri).predict(x[n:].astype(np.float32))
    assert np.max(np.abs(np.asarray(pyfunc, dtype=np.float64).reshape(-1) - native)) < 1e-6
    with pytest.raises(ValueError, match="features"):
        type(kind).load(uri, FEATURE_COLUMNS[:-1])
