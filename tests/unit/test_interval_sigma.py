"""The sigma of return intervals: a QLIKE fit of the horizon's realized variance that scales
with today's volatility and learns mean reversion to the recent level, causal (a row's sigma
reads only candles up to its close and a fit only labels realized before the rows it scales),
and the same number in evaluation, the card and the service; schema 1 cards still read as the
computation they recorded."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from candlecast.errors import NotEnoughHistoryError
from candlecast.evaluation import interval_sigma
from candlecast.evaluation.walkforward import walk_forward
from candlecast.features.volatility import volatility_features
from candlecast.modeling.card import SCHEMA_VERSION, IntervalCalibration, ModelCard
from candlecast.modeling.evaluation_results import EvaluationSettings
from candlecast.modeling.target_evaluation import (
    REALIZED_VARIANCE,
    interval_sigmas,
    target_frame,
)
from candlecast.serving import targets as served
from candlecast.targets import ReturnTarget

HORIZON = 24
HOUR = 3_600_000
SETTINGS = EvaluationSettings(train_rows=1500, test_rows=500, calibration_rows=400)


def random_walk(rows: int, seed: int, sigma: np.ndarray) -> pd.DataFrame:
    """Hourly candles of log returns ``N(0, sigma)``."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1, rows) * sigma))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 1, rows)) * sigma * close * 0.5
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


@pytest.fixture(scope="module")
def cycles():
    """Hourly candles whose volatility swings slowly around a constant level (it reverts)."""
    sigma = 0.01 * np.exp(0.8 * np.sin(np.arange(5000) / 150))
    candles = random_walk(5000, seed=3, sigma=sigma)
    return candles, target_frame(candles, "1h", "t:X/Y", ReturnTarget(HORIZON))


def test_the_columns_are_the_ewma_and_the_short_and_middle_har_windows():
    assert interval_sigma.sigma_columns("1h") == ["ewma_var", "rv_24", "rv_168"]
    assert interval_sigma.sigma_columns("5m") == ["ewma_var", "rv_12", "rv_288"]


def test_the_fit_recovers_a_known_log_linear_variance():
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(-9, 1, (4000, 2)))
    true = np.exp(-3.0 + 0.7 * np.log(x[:, 0]) + 0.3 * np.log(x[:, 1]))
    realized = true * rng.chisquare(1, len(true))  # a squared normal around the variance
    fit = interval_sigma.fit_sigma(x, realized, ["a", "b"])
    assert fit.weights == pytest.approx((0.7, 0.3), abs=0.06)
    assert sum(fit.weights) == pytest.approx(1.0)
    assert fit.intercept == pytest.approx(-3.0, abs=0.6)
    np.testing.assert_allclose(fit.sigma(x) ** 2, true, rtol=0.25)


def test_zero_realized_variances_are_ordinary_rows_and_the_weights_stay_non_negative():
    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(-9, 1, (500, 2)))
    realized = np.where(rng.uniform(size=500) < 0.3, 0.0, x[:, 0])  # flat candles: zeros
    fit = interval_sigma.fit_sigma(x, realized, ["a", "b"])
    assert all(w >= 0 for w in fit.weights) and np.isfinite(fit.intercept)
    assert fit.weights[0] > 0.8  # the zeros do not drag the slope of the informative column


def test_too_few_rows_or_bad_values_are_refused():
    x = np.full((50, 1), 1e-4)
    with pytest.raises(NotEnoughHistoryError, match="too few to fit"):
        interval_sigma.fit_sigma(x, np.full(50, 1e-4), ["a"])
    x = np.full((200, 1), 1e-4)
    with pytest.raises(ValueError, match="non-finite"):
        interval_sigma.fit_sigma(x, np.full(200, np.nan), ["a"])


def test_the_fit_mean_reverts_to_the_recent_level_where_the_ewma_does_not():
    """Log volatility an AR(1) with a half-life of about 14 hours: at a day's horizon a storm
    has mostly passed and a lull mostly ended, which the EWMA alone cannot know; the week's
    realized variance knows the level it reverts to."""
    rng = np.random.default_rng(5)
    log_sigma = np.zeros(5000)
    for i in range(1, 5000):
        log_sigma[i] = 0.95 * log_sigma[i - 1] + rng.normal(0, 0.16)
    candles = random_walk(5000, seed=6, sigma=0.01 * np.exp(log_sigma))
    frame = target_frame(candles, "1h", "t:X/Y", ReturnTarget(HORIZON))
    columns = interval_sigma.sigma_columns("1h")
    fit = interval_sigma.fit_sigma(
        frame[columns].to_numpy(), frame[REALIZED_VARIANCE].to_numpy(), columns
    )
    assert sum(fit.weights) == pytest.approx(1.0)
    assert fit.weights[2] > 0.2  # pulled towards the week's level
    ewma = frame["ewma_var"].to_numpy() * HORIZON
    forecast = fit.sigma(frame[columns].to_numpy()) ** 2
    calm, wild = ewma < np.quantile(ewma, 0.1), ewma > np.quantile(ewma, 0.9)
    assert (forecast[calm] > ewma[calm]).mean() > 0.8  # a lull: wider than today's EWMA
    assert (forecast[wild] < ewma[wild]).mean() > 0.8  # a storm: narrower


def test_a_storm_after_a_calm_training_window_scales_the_sigma_with_it():
    """Volatility k times higher in every column gives a sigma sqrt(k) times higher, however
    calm the training window was: the forecast is not pulled to the window's level (the free
    weights before were, and a storm after calm months stayed too narrow for weeks)."""
    rng = np.random.default_rng(7)
    calm = random_walk(3000, seed=8, sigma=np.full(3000, 0.004))
    frame = target_frame(calm, "1h", "t:X/Y", ReturnTarget(HORIZON))
    columns = interval_sigma.sigma_columns("1h")
    values = frame[columns].to_numpy()
    fit = interval_sigma.fit_sigma(values, frame[REALIZED_VARIANCE].to_numpy(), columns)
    rows = values[rng.choice(len(values), 50)]
    np.testing.assert_allclose(fit.sigma(rows * 16), 4 * fit.sigma(rows), rtol=1e-9)
    storm = np.full((1, 3), 16 * float(np.median(values[:, 0])))
    storm[0, 1:] *= [24, 168]  # per-candle variance 16 times the calm one in every window
    assert fit.sigma(storm)[0] > 3 * np.sqrt(HORIZON * np.median(values[:, 0]))


def test_evaluation_sigmas_are_causal(cycles):
    """Changing every candle after a window's first row leaves that window's sigmas alone."""
    candles, frame = cycles
    target = ReturnTarget(HORIZON)
    positions = np.arange(len(frame))
    folds = walk_forward(
        len(positions), train=SETTINGS.train_rows, test=SETTINGS.test_rows, gap=target.embargo
    )
    before = interval_sigmas(frame, positions, folds, SETTINGS, target, "1h")
    cut = frame["event_timestamp"].iloc[folds[1].test[0]]
    changed = candles.copy()
    later = pd.to_datetime(changed["ts"], unit="ms", utc=True) >= cut
    changed.loc[later, ["open", "high", "low", "close"]] *= np.exp(
        np.random.default_rng(9).normal(0, 0.05, (later.sum(), 1))
    )
    after = interval_sigmas(
        target_frame(changed, "1h", "t:X/Y", target), positions, folds, SETTINGS, target, "1h"
    )
    kept = np.concatenate([folds[0].train[-SETTINGS.calibration_rows :], folds[0].test])
    kept = np.concatenate([kept, folds[1].test[:1]])
    np.testing.assert_array_equal(before[kept], after[kept])
    assert not np.allclose(before[folds[1].test[1:]], after[folds[1].test[1:]])


def test_the_service_sigma_of_a_row_is_the_evaluation_sigma_of_that_row(cycles):
    """The card's calibration applied by the service to the features it computes from the
    candles up to a row equals the evaluation's sigma of that row with the same fit."""
    candles, frame = cycles
    columns = interval_sigma.sigma_columns("1h")
    train = np.arange(2000)
    fit = interval_sigma.fit_sigma(
        frame[columns].to_numpy()[train], frame[REALIZED_VARIANCE].to_numpy()[train], columns
    )
    card = IntervalCalibration(
        source=interval_sigma.SOURCE,
        columns=list(fit.columns),
        weights=list(fit.weights),
        intercept=fit.intercept,
        multipliers={"0.9": 1.6},
    )
    card = IntervalCalibration.model_validate_json(card.model_dump_json())  # as stored
    evaluated = fit.sigma(frame[columns].to_numpy())
    for row in (2100, 3000, len(frame) - 1):
        close = frame["event_timestamp"].iloc[row]
        known = candles[pd.to_datetime(candles["ts"], unit="ms", utc=True) < close]
        online = volatility_features(known, "1h", (HORIZON,)).iloc[-1]  # the service's row
        assert online["event_timestamp"] == close
        assert served._sigma(online, card) == pytest.approx(evaluated[row], rel=1e-12)


SCHEMA_1 = {
    "schema_version": 1,
    "stream": "replay_btc_usd_1h",
    "exchange": "replay",
    "symbol": "BTC/USD",
    "timeframe": "1h",
    "target": "return",
    "horizon": 4,
    "target_key": "return_h4",
    "outputs": ["log_return"],
    "kind": "persistence",
    "registered_model": "m",
    "features": ["ret_1"],
    "train_start": "a",
    "train_end": "b",
    "holdout_start": "c",
    "holdout_end": "d",
    "data_version": "v",
    "scores": {},
    "baseline": "persistence",
    "baseline_scores": {},
    "decision": "kept",
    "intervals": {"sigma_feature": "ewma_var", "multipliers": {"0.9": 1.5}},
}


def test_a_schema_1_card_reads_as_the_ewma_sigma_it_recorded():
    card = ModelCard.model_validate_json(json.dumps(SCHEMA_1))
    assert card.schema_version == SCHEMA_VERSION and card.intervals is not None
    assert card.intervals.source == "ewma" and card.intervals.columns == ["ewma_var"]
    assert card.intervals.sigma(np.array([[2e-5]]))[0] == pytest.approx(math.sqrt(4 * 2e-5))
    main = IntervalCalibration.model_validate(SCHEMA_1["intervals"])  # intervals.json, h = 1
    assert main.sigma(np.array([[2e-5]]))[0] == pytest.approx(math.sqrt(2e-5))
    again = ModelCard.model_validate_json(card.model_dump_json())
    assert again == card


def test_cards_of_an_unknown_schema_or_misaligned_weights_are_refused():
    with pytest.raises(ValueError, match="model card schema 6"):
        ModelCard.model_validate({**SCHEMA_1, "schema_version": 6})
    with pytest.raises(ValueError, match="1 weights for columns"):
        IntervalCalibration(
            source="x", columns=["a", "b"], weights=[1.0], intercept=0.0, multipliers={}
        )
    with pytest.raises(ValueError, match="extra"):
        IntervalCalibration.model_validate(
            {**SCHEMA_1["intervals"], "sigma_features": ["ewma_var"]}
        )
