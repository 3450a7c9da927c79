"""The LightGBM kinds: early stopping on the tail of the training rows, the direction
classifier's forecast, ONNX parity, and an MLflow round trip on a throwaway store."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from candlecast.config import TrainingSection
from candlecast.errors import ConfigError
from candlecast.modeling.kinds import check_training, get_kind, kind_names, kind_params
from candlecast.modeling.kinds.base import model_inputs
from candlecast.modeling.kinds.lightgbm_kind import estimator_options, validation_start
from candlecast.modeling.onnx_export import run_onnx
from tests.helpers import REPO

FEATURES = ["a", "b", "c", "d"]
KINDS = ["lightgbm", "lightgbm_direction"]
#: Parameters that overfit quickly, so early stopping has something to stop.
EAGER = {
    "n_estimators": 2000,
    "learning_rate": 0.1,
    "num_leaves": 8,
    "min_child_samples": 20,
    "reg_lambda": 0.0,
    "early_stopping_rounds": 20,
}


def data(seed: int = 0, n: int = 2000, signal: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.01, size=(n, len(FEATURES))).astype(np.float32).astype(np.float64)
    return x, signal * x[:, 0] + rng.normal(0, 0.002, n)


def kind(name: str, **params):
    cls = get_kind(name)
    return cls(FEATURES, cls.Params(**params))


def test_the_validation_fold_is_the_tail_or_nothing():
    assert validation_start(1000, 0.15, 50) == 850
    assert validation_start(1000, 0.15, 0) is None  # disabled
    assert validation_start(300, 0.15, 50) is None  # 45 validation rows: too few
    assert validation_start(60, 0.5, 50) is None  # 30 rows on each side


@pytest.mark.parametrize("name", KINDS)
def test_early_stopping_stops_on_noise_and_keeps_the_best_trees(name):
    x, y = data(signal=0.0)
    model = kind(name, **EAGER)
    model.fit(x, y)
    assert model.best_iteration is not None and model.best_iteration < EAGER["n_estimators"]
    assert model.model.n_estimators == model.model.booster_.num_trees() == model.best_iteration
    # the kept model is refitted on every row given to fit, validation tail included
    cls = lgb.LGBMRegressor if name == "lightgbm" else lgb.LGBMClassifier
    target = y if name == "lightgbm" else (y > 0).astype(int)
    refit = cls(n_estimators=model.best_iteration, **estimator_options(model.params))
    refit.fit(x, target)
    assert np.array_equal(refit.predict(x), model.model.predict(x))


@pytest.mark.parametrize("name", KINDS)
def test_early_stopping_watches_only_the_tail_of_the_fit_rows(name):
    x, y = data(1, signal=0.3)
    rows, start = 1500, validation_start(1500, 0.15, EAGER["early_stopping_rounds"])
    first = kind(name, **EAGER)
    first.fit(x[:rows], y[:rows])
    # The stopping point is that of a model fitted before the tail and scored on the tail.
    cls = lgb.LGBMRegressor if name == "lightgbm" else lgb.LGBMClassifier
    target = y[:rows] if name == "lightgbm" else (y[:rows] > 0).astype(int)
    probe = cls(n_estimators=EAGER["n_estimators"], **estimator_options(first.params))
    stop = lgb.early_stopping(EAGER["early_stopping_rounds"], verbose=False)
    probe.fit(
        x[:start], target[:start], eval_X=x[start:rows], eval_y=target[start:], callbacks=[stop]
    )
    assert first.best_iteration == probe.best_iteration_ < EAGER["n_estimators"]
    # Rows after the fit rows are never read, whatever they hold.
    later = y.copy()
    later[rows:] = -later[rows:]
    again = kind(name, **EAGER)
    again.fit(x[:rows], later[:rows])
    assert again.best_iteration == first.best_iteration
    assert np.array_equal(again.predict(x), first.predict(x))
    # Another validation tail stops somewhere else.
    tail = y[:rows].copy()
    tail[start:] = np.random.default_rng(9).permutation(tail[start:])
    shuffled = kind(name, **EAGER)
    shuffled.fit(x[:rows], tail)
    assert shuffled.best_iteration != first.best_iteration


@pytest.mark.parametrize("name", KINDS)
def test_no_early_stopping_with_zero_rounds_or_few_rows(name):
    x, y = data(2, signal=0.0)
    off = kind(name, **{**EAGER, "n_estimators": 60, "early_stopping_rounds": 0})
    off.fit(x, y)
    assert off.best_iteration is None and off.model.booster_.num_trees() == 60
    few = kind(name, **{**EAGER, "n_estimators": 60})
    few.fit(x[:300], y[:300])  # 45 validation rows
    assert few.best_iteration is None and few.model.booster_.num_trees() == 60


def test_direction_forecast_is_the_signed_probability_in_return_units():
    x, y = data(3)
    model = kind("lightgbm_direction", learning_rate=0.05)
    model.fit(x[:1500], y[:1500])
    p_up, forecast = model.probability_up(x[1500:]), model.predict(x[1500:])
    assert forecast.shape == (500,) and forecast.dtype == np.float64
    assert model.scale == pytest.approx(np.mean(np.abs(y[:1500])), rel=1e-12)
    assert np.array_equal(forecast > 0, p_up > 0.5)
    assert np.all(np.abs(forecast) <= model.scale)
    assert np.allclose(forecast, (2 * p_up - 1) * model.scale, rtol=0, atol=1e-15)
    assert np.mean(np.sign(forecast) == np.sign(y[1500:])) > 0.75  # it learnt the direction
    assert model.feature_importance()["a"] == max(model.feature_importance().values())


def test_direction_drops_flat_returns_from_training():
    x, y = data(4)
    flat = y.copy()
    flat[::4] = 0.0
    moved = flat != 0
    with_flat, without = kind("lightgbm_direction"), kind("lightgbm_direction")
    with_flat.fit(x, flat)
    without.fit(x[moved], flat[moved])
    assert np.array_equal(with_flat.probability_up(x), without.probability_up(x))
    # the scale counts the flat rows as moves of size 0
    assert with_flat.scale == pytest.approx(0.75 * without.scale, rel=0.05)
    down = flat.copy()
    down[~moved] = -1e-9  # flat taken as down: a different model
    as_down = kind("lightgbm_direction")
    as_down.fit(x, down)
    assert not np.array_equal(as_down.probability_up(x), with_flat.probability_up(x))
    with pytest.raises(ValueError, match="up and down"):
        kind("lightgbm_direction").fit(x, np.abs(flat))


@pytest.fixture(scope="module")
def real_rows(btc_candles):
    from candlecast.features.engineering import FEATURE_COLUMNS, compute_features, next_return

    candles = btc_candles.tail(3000)
    rows = compute_features(candles, "1h", "replay:BTC/USD")
    rows = rows.merge(next_return(candles, "1h"), on="event_timestamp").dropna()
    return model_inputs(rows, FEATURE_COLUMNS), rows["target"].to_numpy(), FEATURE_COLUMNS


@pytest.mark.parametrize("name", KINDS)
def test_onnx_gives_the_native_forecasts(name, real_rows):
    import onnx

    x, y = data(5)
    synthetic = kind(name)
    synthetic.fit(x[:1500], y[:1500])
    rx, ry, columns = real_rows
    real = get_kind(name)(columns)  # the defaults, on real features
    real.fit(rx[:2000], ry[:2000])
    # early stopping ran where the defaults ask for it (the direction kind's)
    assert (real.best_iteration is not None) == (real.params.early_stopping_rounds > 0)
    for model, rows in ((synthetic, x[1500:]), (real, rx[2000:])):
        graph = model.to_onnx()
        onnx.checker.check_model(graph)
        assert [o.name for o in graph.graph.output] == ["variable"]
        native = model.predict(rows)
        assert np.max(np.abs(run_onnx(graph.SerializeToString(), rows) - native)) < 1e-6
        assert np.max(np.abs(native)) > 0


def test_registry_knows_the_direction_kind_and_checks_its_parameters():
    assert set(KINDS) <= set(kind_names())
    params = {"lightgbm_direction": {"num_leaves": 8, "early_stopping_rounds": 0}}
    training = TrainingSection(kinds=["lightgbm_direction"], params=params)
    check_training(training)
    parsed = kind_params(training, "lightgbm_direction")
    assert (parsed.num_leaves, parsed.early_stopping_rounds) == (8, 0)
    assert parsed.validation_fraction == 0.15  # a default
    defaults = kind_params(TrainingSection(), "lightgbm")
    assert (defaults.validation_fraction, defaults.early_stopping_rounds) == (0.15, 0)
    direction = kind_params(TrainingSection(kinds=["lightgbm_direction"]), "lightgbm_direction")
    assert (direction.learning_rate, direction.early_stopping_rounds) == (0.005, 50)
    for bad, key in (({"leaves": 8}, "leaves"), ({"validation_fraction": 0.9}, "validation")):
        wrong = TrainingSection(kinds=["lightgbm_direction"], params={"lightgbm_direction": bad})
        with pytest.raises(ConfigError, match=f"(?s)lightgbm_direction.*{key}"):
            check_training(wrong, "BTC/USD")
    with pytest.raises(ConfigError, match="early_stopping_rounds"):
        check_training(TrainingSection(params={"lightgbm": {"early_stopping_rounds": -1}}))


@pytest.fixture
def experiment(tmp_path):
    """A throwaway MLflow store (SQLite, artifacts beside it); the experiment's id."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/m.db")
    try:
        yield mlflow.create_experiment(
            "lightgbm-kinds", artifact_location=(tmp_path / "artifacts").as_uri()
        )
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_logged_direction_model_loads_with_the_same_forecasts(experiment):
    import mlflow

    x, y = data(6)
    model = kind("lightgbm_direction", num_leaves=8)
    model.fit(x[:1500], y[:1500])
    regressor = kind("lightgbm")
    regressor.fit(x[:1500], y[:1500])
    example = pd.DataFrame(x[1500:], columns=FEATURES)
    with mlflow.start_run(experiment_id=experiment):
        uri = model.log_model(example)
        regressor_uri = regressor.log_model(example, name="regressor")
    version = mlflow.register_model(uri, "test-lightgbm-direction")
    loaded = get_kind("lightgbm_direction").load(
        f"models:/test-lightgbm-direction/{version.version}", FEATURES
    )
    native = model.predict(x[1500:])
    assert loaded.params == model.params and loaded.scale == model.scale
    assert np.array_equal(loaded.predict(x[1500:]), native)
    onnx = run_onnx(loaded.to_onnx().SerializeToString(), x[1500:])
    assert np.max(np.abs(onnx - native)) < 1e-6
    # the flavour's own pyfunc answers the direction label
    labels = mlflow.pyfunc.load_model(uri).predict(example)
    assert np.array_equal(np.asarray(labels), (model.probability_up(x[1500:]) > 0.5).astype(int))
    reloaded = get_kind("lightgbm").load(regressor_uri, FEATURES)
    assert np.array_equal(reloaded.predict(x[1500:]), regressor.predict(x[1500:]))
    with pytest.raises(ValueError, match="features"):
        get_kind("lightgbm_direction").load(uri, FEATURES[:-1])
    with pytest.raises(ValueError, match="'lightgbm' model"):
        get_kind("lightgbm_direction").load(regressor_uri, FEATURES)
    assert not (REPO / "mlruns").exists()
