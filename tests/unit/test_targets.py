"""Targets as plug-ins: labels only from the candles after a row's close, never across a gap;
QLIKE; the volatility baselines and the learned kind relative to the EWMA, with ONNX parity;
the embargo that keeps overlapping labels out of a score; adaptive intervals."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from candlecast.errors import ConfigError, UnknownModelKindError
from candlecast.evaluation import intervals as iv
from candlecast.features.volatility import (
    candles_per_day,
    ewma_decay,
    har_windows,
    volatility_columns,
    volatility_features,
)
from candlecast.modeling.evaluation_results import EvaluationSettings
from candlecast.modeling.kinds import get_kind, kind_names, register
from candlecast.modeling.kinds.base import ModelKind
from candlecast.modeling.target_evaluation import evaluate_target
from candlecast.modeling.targeted import TargetModel
from candlecast.targets import ReturnTarget, VolatilityTarget, get_target
from candlecast.targets.volatility import VARIANCE_FLOOR, qlike

HOUR = 3_600_000


def random_walk(rows: int, seed: int = 0, sigma: float | np.ndarray = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 1, rows) * sigma
    close = 100 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 1, rows)) * np.asarray(sigma) * close * 0.5
    return pd.DataFrame(
        {
            "ts": np.arange(rows, dtype=np.int64) * HOUR + 1_600_000_000_000 // HOUR * HOUR,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(5, 15, rows),
        }
    )


def test_return_label_is_the_log_return_h_candles_ahead():
    candles = random_walk(50)
    labels = ReturnTarget(4).label(candles, "1h")
    log_close = np.log(candles["close"].to_numpy())
    assert len(labels) == 46
    np.testing.assert_allclose(labels["target"], log_close[4:] - log_close[:-4])
    first_close = pd.Timestamp(int(candles["ts"][0]) + HOUR, unit="ms", tz="UTC")
    assert labels["event_timestamp"][0] == first_close  # the row of the first candle's close


def test_volatility_label_is_the_sum_of_the_next_squared_returns():
    candles = random_walk(50)
    labels = VolatilityTarget(3).label(candles, "1h")
    r = np.diff(np.log(candles["close"].to_numpy()))
    np.testing.assert_allclose(labels["target"][0], (r[:3] ** 2).sum())
    np.testing.assert_allclose(labels["target"][10], (r[10:13] ** 2).sum())


@pytest.mark.parametrize("target", [ReturnTarget(3), VolatilityTarget(3)])
def test_a_label_uses_only_the_candles_after_its_close(target):
    candles = random_walk(60)
    base = target.label(candles, "1h").set_index("event_timestamp")["target"]
    # row 10's label reads its own close (the price the forecast starts from) and the next 3
    for changed in (9, 10, 13, 14):
        other = candles.copy()
        other.loc[changed, "close"] *= 1.05
        row = target.label(other, "1h").set_index("event_timestamp")["target"].iloc[10]
        assert (row != base.iloc[10]) == (10 <= changed <= 13), changed


@pytest.mark.parametrize("name", ["return", "volatility"])
def test_no_label_spans_a_gap(name):
    candles = random_walk(40).drop(index=[20]).reset_index(drop=True)
    labels = get_target(name, 2).label(candles, "1h")
    hours = (labels["event_timestamp"].astype("int64") // 1000 // HOUR).to_numpy()
    first = int(candles["ts"][0]) // HOUR + 1
    # the rows of candles 18 and 19 would need the missing candle 20
    assert not set(hours - first) & {18, 19, 20}
    assert len(labels) == 39 - 2 - 2  # 39 candles; 18, 19 and the last two have no label


def test_unknown_targets_and_kinds_are_named():
    with pytest.raises(ConfigError, match=r"unknown target 'vol'.*return, volatility"):
        get_target("vol")
    with pytest.raises(ConfigError, match="horizon"):
        get_target("return", 0)
    with pytest.raises(UnknownModelKindError, match="'lstm' for target 'volatility'"):
        get_kind("lstm", "volatility")
    assert {"persistence", "ewma", "har", "lightgbm"} <= set(kind_names("volatility"))
    assert "ewma" not in kind_names("return")


def test_qlike_is_zero_only_for_the_perfect_forecast():
    realized = np.array([1e-4, 4e-4, 2e-4])
    assert qlike(realized, realized).max() == pytest.approx(0, abs=1e-12)
    assert (qlike(realized, realized * 2) > 0).all() and (qlike(realized, realized / 2) > 0).all()
    # under-forecasting is punished harder than over-forecasting by the same factor
    assert qlike(realized, realized / 2).mean() > qlike(realized, realized * 2).mean()
    assert np.isfinite(qlike(np.zeros(2), np.zeros(2))).all()  # floored, never NaN


def test_volatility_features_are_known_at_the_close_and_scaled_per_timeframe():
    candles = random_walk(2000)
    features = volatility_features(candles, "1h", (5,))
    r2 = np.diff(np.log(candles["close"].to_numpy()), prepend=np.nan) ** 2
    np.testing.assert_allclose(features["rv_5"][100], r2[96:101].sum())
    assert list(features.columns[2:]) == volatility_columns("1h", (5,))
    assert har_windows("1h") == (24, 168, 720) and har_windows("5m") == (12, 288, 2016)
    assert candles_per_day("1d") == 1
    assert ewma_decay("1h") == pytest.approx(0.5 ** (1 / 12))
    later = candles.copy()
    later.loc[1500:, "close"] *= 1.3  # a change after row 1499 leaves every earlier row alone
    again = volatility_features(later, "1h", (5,))
    pd.testing.assert_frame_equal(features.iloc[:1500], again.iloc[:1500])


def _onnx_forecast(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString())
    name = session.get_inputs()[0].name
    return session.run(None, {name: x.astype(np.float32)})[0].reshape(-1)


@pytest.fixture(scope="module")
def vol_rows():
    from candlecast.modeling.target_evaluation import target_frame

    sigma = 0.01 * np.exp(np.sin(np.arange(4000) / 200))  # slow volatility cycles
    candles = random_walk(4000, sigma=sigma)
    target = VolatilityTarget(4)
    return target, target_frame(candles, "1h", "t:X/Y", target).dropna()


@pytest.mark.parametrize("name", ["persistence", "ewma", "har", "lightgbm"])
def test_volatility_kinds_forecast_variances_and_export_with_parity(vol_rows, name):
    target, frame = vol_rows
    model = TargetModel.create(get_kind(name, "volatility"), target, "1h", None)
    x = frame[list(model.spec.features)].to_numpy(np.float32).astype(np.float64)
    y = frame["target"].to_numpy()
    cut = 2000
    assert len(frame) > cut + 1000  # the month-long windows are warm
    model.fit(x[:cut], y[:cut])
    predicted = model.predict(x[cut:])
    assert (predicted >= VARIANCE_FLOOR).all() and np.isfinite(predicted).all()
    np.testing.assert_allclose(_onnx_forecast(model.to_onnx(), x[cut:]), predicted, rtol=2e-4)
    if name == "persistence":
        np.testing.assert_allclose(predicted, frame["rv_4"].to_numpy()[cut:], rtol=1e-6)
    if name == "ewma":
        np.testing.assert_allclose(predicted, 4 * frame["ewma_var"].to_numpy()[cut:], rtol=1e-6)
    if name in ("har", "lightgbm"):  # learns the cycles: beats "the last 4 candles again"
        persistence = np.maximum(frame["rv_4"].to_numpy()[cut:], VARIANCE_FLOOR)
        assert qlike(y[cut:], predicted).mean() < qlike(y[cut:], persistence).mean()


class _NearestInTime(ModelKind):
    """Forecasts the label of the training row nearest in time: all it can know about a test
    row is what overlapping labels leak."""

    name: ClassVar[str] = "nearest_in_time_test"
    trainable: ClassVar[bool] = True

    def fit(self, x, y):
        self.times, self.labels = x[:, 0], y

    def predict(self, x):
        nearest = np.abs(x[:, :1] - self.times[None, :]).argmin(axis=1)
        return self.labels[nearest]

    def log_model(self, input_example, name="model"):
        raise NotImplementedError

    @classmethod
    def load(cls, model_uri, features):
        raise NotImplementedError

    def to_onnx(self):
        raise NotImplementedError

    @classmethod
    def for_target(cls, target, timeframe, params=None, features=()):
        return cls(["row_number"], params)


register(_NearestInTime)


class _NoEmbargo(ReturnTarget):
    @property
    def embargo(self) -> int:
        return 0


@pytest.mark.parametrize("embargoed", [True, False])
def test_overlapping_labels_never_leak_into_a_score(embargoed):
    """A feature that identifies the training rows (their time) lets a model forecast a test
    row with the label of the last training row, which shares 20 to 23 of its 24 returns in
    windows of 4 rows when no rows are embargoed. With the target's embargo, that edge is
    gone."""
    from candlecast.modeling.target_evaluation import target_frame

    target = ReturnTarget(24) if embargoed else _NoEmbargo(24)
    frame = target_frame(random_walk(4000, seed=3), "1h", "t:X/Y", target)
    frame["row_number"] = np.arange(len(frame), dtype=np.float64)
    settings = EvaluationSettings(train_rows=400, test_rows=4, calibration_rows=100)
    report = evaluate_target(frame, target, ["nearest_in_time_test"], "1h", settings)
    leak = report.kinds["nearest_in_time_test"]
    ratio = leak.scores["rmse"] / report.kinds["persistence"].scores["rmse"]
    if embargoed:
        assert ratio > 0.95  # no better than "no change": nothing leaked
        assert all(f.test[0] - f.train[-1] - 1 == 24 for f in report.folds)
    else:
        assert ratio < 0.7  # the leak the embargo removes


def test_aci_widens_after_misses_and_narrows_after_hits():
    state = iv.AciState(coverage=0.9, gamma=0.01)
    for score in np.linspace(0, 2, 101):
        state.observe(score, None)
    start = state.multiplier()
    for _ in range(20):
        state.observe(1.0, True)
    assert state.alpha < 0.1 and state.multiplier() > start
    for _ in range(200):
        state.observe(1.0, False)
    assert state.alpha > 0.1


def test_volatility_scaled_intervals_hold_in_every_regime_where_fixed_width_fails():
    rng = np.random.default_rng(7)
    rows = 6000
    sigma = 0.01 * np.where((np.arange(rows) // 500) % 2 == 0, 1.0, 3.0)  # calm / wild
    realized = rng.normal(0, 1, rows) * sigma
    predicted = np.zeros(rows)
    calibration = np.abs(rng.normal(0, 1, 500))
    times = pd.date_range("2020-01-01", periods=rows, freq="h", tz="UTC")
    ex_ante = sigma * rng.uniform(0.8, 1.2, rows)  # what the terciles are cut on
    bands = iv.adaptive_intervals(
        predicted, sigma, realized, coverage=0.9, horizon=1, calibration=calibration
    )
    adaptive = iv.interval_scores(
        realized, bands.lower, bands.upper, level=0.9, ex_ante_volatility=ex_ante, times=times
    )
    half = np.quantile(np.abs(realized[:500]), 0.9)
    fixed = iv.interval_scores(
        realized,
        predicted - half,
        predicted + half,
        level=0.9,
        ex_ante_volatility=ex_ante,
        times=times,
    )
    assert 0.88 <= adaptive.rate <= 0.92
    assert min(adaptive.by_volatility_tercile) > 0.87
    assert min(fixed.by_volatility_tercile) < 0.7  # the wild regime is missed
    assert adaptive.winkler < fixed.winkler


def test_interval_scores_by_hand():
    realized = np.array([0.0, 2.0, -3.0, 0.5])
    lower, upper = np.full(4, -1.0), np.full(4, 1.0)
    times = pd.date_range("2020-01-01", periods=4, freq="D", tz="UTC")
    scores = iv.interval_scores(
        realized, lower, upper, level=0.8, ex_ante_volatility=np.arange(4.0), times=times
    )
    assert scores.rate == 0.5
    # width 2, plus 2/0.2 times the miss: 1 above, 2 below
    assert scores.winkler == pytest.approx((2 + 2 + 10 * 1 + 2 + 10 * 2 + 2) / 4)
    assert math.isclose(scores.mean_width, 2.0)
