"""Model kinds as plug-ins: the registry, parameter schemas, and each bundled kind's contract
(fit, predict, ONNX with the same answers) without MLflow."""

import numpy as np
import pytest

from candlecast.config import TrainingSection
from candlecast.errors import ConfigError, UnknownModelKindError
from candlecast.modeling.kinds import BASELINE, check_training, get_kind, kind_names, kind_params
from candlecast.modeling.kinds.base import ModelKind
from candlecast.modeling.onnx_export import run_onnx

FEATURES = ["a", "b", "c", "d"]


def data(seed: int = 0, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.01, size=(n, len(FEATURES))).astype(np.float32).astype(np.float64)
    return x, 0.8 * x[:, 0] + rng.normal(0, 0.002, n)


def test_registry_knows_the_bundled_kinds():
    assert {"persistence", "drift", "lightgbm"} <= set(kind_names())
    assert get_kind(BASELINE).trainable is False
    assert all(issubclass(get_kind(name), ModelKind) for name in kind_names())
    with pytest.raises(UnknownModelKindError, match=r"known: .*lightgbm.*persistence"):
        get_kind("lightgmb")


def test_parameters_are_validated_by_the_kind():
    training = TrainingSection(params={"lightgbm": {"num_leaves": 8}})
    assert kind_params(training, "lightgbm").num_leaves == 8
    assert kind_params(training, "lightgbm").n_estimators == 200  # the kind's default
    with pytest.raises(ConfigError, match="leaves"):
        check_training(TrainingSection(params={"lightgbm": {"leaves": 8}}), "BTC/USD")
    with pytest.raises(ConfigError, match="num_leaves"):
        check_training(TrainingSection(params={"lightgbm": {"num_leaves": 0}}))
    with pytest.raises(ConfigError, match="BTC/USD: unknown model kind 'xgboost'"):
        check_training(TrainingSection(kinds=["xgboost"]), "BTC/USD")


@pytest.mark.parametrize("name", ["persistence", "drift", "lightgbm"])
def test_every_kind_predicts_and_exports_the_same_answers(name):
    kind = get_kind(name)
    model = kind(FEATURES, kind_params(TrainingSection(params={}), name))
    x, y = data()
    model.fit(x[:1500], y[:1500])
    native = model.predict(x[1500:])
    assert native.shape == (500,) and native.dtype == np.float64
    onnx = run_onnx(model.to_onnx().SerializeToString(), x[1500:])
    assert np.max(np.abs(onnx - native)) < 1e-5
    assert model.spec.features == tuple(FEATURES) and model.spec.window == model.window >= 1


def test_lightgbm_learns_a_signal_persistence_cannot():
    x, y = data(1)
    lightgbm = get_kind("lightgbm")(FEATURES, get_kind("lightgbm").Params(num_leaves=8))
    lightgbm.fit(x[:1500], y[:1500])
    error = np.sqrt(np.mean((lightgbm.predict(x[1500:]) - y[1500:]) ** 2))
    baseline = np.sqrt(np.mean(y[1500:] ** 2))
    assert error < 0.9 * baseline


def test_a_new_kind_plugs_in_by_registering(monkeypatch):
    from candlecast.modeling import kinds

    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))

    @kinds.register
    class Mean(get_kind("drift")):
        name = "mean_return"
        baseline = False

    assert get_kind("mean_return") is Mean
    check_training(TrainingSection(kinds=["mean_return"]))


def test_window_inputs_flatten_consecutive_rows_oldest_first():
    import pandas as pd

    from candlecast.modeling.kinds.base import window_inputs

    step = 300_000
    ts = [0, 1, 2, 3, 5, 6, 7]  # a gap between 3 and 5
    frame = pd.DataFrame({"candle_ts": [t * step for t in ts], "a": ts, "b": [10 * t for t in ts]})
    x, usable = window_inputs(frame, ["a", "b"], 3, step)
    assert usable.tolist() == [False, False, True, True, False, False, True]
    assert x[2].tolist() == [0, 0, 1, 10, 2, 20]
    assert x[6].tolist() == [5, 50, 6, 60, 7, 70]
    assert not x[4].any()  # a window across the gap is not an input
    one, all_rows = window_inputs(frame, ["a", "b"], 1, step)
    assert all_rows.all() and one.shape == (7, 2)
