"""The platform forecasts every other configured target's candles itself, point in time.

On the world of :mod:`tests.monitoring.target_world`: each target's champion decided on the
window ending at :data:`FIRST`, then again at :data:`SECOND`; both versions are registered and
exported. Scoring the candles from before the first decision to ten days after the second
forecasts each row with the version in force at its close (never one trained on later data),
once, for each target at its own horizon.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from candlecast.data.ingestion import validated_table
from candlecast.features.featurestore import write_features
from candlecast.modeling import history
from candlecast.monitoring.target_scoring import score_targets
from candlecast.serving.forecast_log import PLATFORM, read_forecasts
from tests.helpers import settings_in
from tests.monitoring import target_world
from tests.monitoring.target_world import FIRST, HOUR_MS, LAST, SECOND
from tests.monitoring.target_world import ms as _ms

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(trained_targets, tmp_path_factory):
    """(settings, pair, {target key: (first version, second version)}, {target key: the rows
    logged right after the second training}), in this module's copy of the world."""
    world = target_world.copy(trained_targets, tmp_path_factory.mktemp("target_scoring") / "home")
    pairs = zip(world.first, world.second, strict=True)
    versions = {a.target_key: (a.version, b.version) for a, b in pairs}
    return world.settings, world.pair, versions, world.logged


def _platform(pair, settings, key, start=None, end=None):
    """The target's rows the platform forecast with the version in force (its shadow
    challengers' rows, source ``shadow``, are :mod:`tests.monitoring.test_target_shadow`'s)."""
    logged = read_forecasts(pair.stream.key, start, end, settings, target_key=key)
    return logged[logged["source"] == PLATFORM].reset_index(drop=True)


def test_the_train_task_forecasts_the_candles_after_its_window_with_the_new_champion(world):
    _, _, versions, logged = world
    for key, (_, new) in versions.items():
        rows = logged[key]
        # from the candle closing at the window's end (its data time) to the newest
        expected = np.arange(_ms(SECOND), _ms(LAST) + 1, HOUR_MS)
        assert rows["feature_ts"].tolist() == expected.tolist()
        assert set(rows["model_version"]) == {new} and set(rows["source"]) == {PLATFORM}


def test_each_row_is_forecast_by_the_target_version_in_force_at_its_close(world):
    settings, pair, versions, _ = world
    assert set(versions) == {"return_h4", "volatility_h24"}
    assert all(a != b for a, b in versions.values())
    scored = score_targets(pair, FIRST - timedelta(days=2), None, settings)
    found = {s.target_key: s for s in scored}
    assert set(found) == set(versions)
    for key, (old, new) in versions.items():
        logged = _platform(pair, settings, key)
        assert len(logged) == found[key].rows
        closes = logged["feature_ts"].to_numpy()
        # nothing before the first decision; every hourly close from it on, once
        expected = np.arange(_ms(FIRST), _ms(LAST) + 1, HOUR_MS)
        assert closes.tolist() == expected.tolist()
        by = logged["model_version"].to_numpy()
        assert (by[closes < _ms(SECOND)] == old).all() and (by[closes >= _ms(SECOND)] == new).all()
        assert found[key].versions == {old: 4 * 24, new: 6 * 24 + 1}
        horizon = int(key.rsplit("_h", 1)[1])
        assert (logged["target_ts"] - logged["feature_ts"] == horizon * HOUR_MS).all()
    # the main target's rows are not mixed in, nor these in the main target's
    assert read_forecasts(pair.stream.key, settings=settings).empty


def test_the_logged_forecast_is_what_the_version_answers_for_the_row(world):
    """The row computed by training's feature function and the version's ONNX model: the
    first version's forecast of a row from before the second decision equals the one the
    service computes from the same features."""
    from candlecast.modeling.target_evaluation import target_frame
    from candlecast.serving.targets import load_version
    from candlecast.targets import get_target

    settings, pair, versions, _ = world
    score_targets(pair, FIRST, None, settings)
    old, _ = versions["volatility_h24"]
    folder = pair.stream.target_dir(settings.paths.models, "volatility_h24") / f"v{old}"
    model = load_version(get_target("volatility", 24), folder)
    candles = validated_table(pair.stream, settings).read(end_ms=_ms(SECOND))
    frame = target_frame(candles, "1h", pair.stream.market_key, model.target, labelled=False)
    row = frame[frame["candle_ts"] + HOUR_MS == _ms(SECOND) - HOUR_MS]
    x = row[model.card.features].to_numpy(np.float32)
    want = float(np.asarray(model.session.run(None, {model.input_name: x})[0]).reshape(-1)[0])
    logged = _platform(pair, settings, "volatility_h24", _ms(SECOND) - HOUR_MS, _ms(SECOND))
    assert logged["model_version"].tolist() == [old]
    assert logged["predicted"].iloc[0] == pytest.approx(want, rel=1e-5)
    # return targets carry the card's nominal 90% interval; volatility none
    returns = _platform(pair, settings, "return_h4")
    assert (returns["lower"] < returns["predicted"]).all()
    assert (returns["predicted"] < returns["upper"]).all() and logged["lower"].isna().all()


def test_every_logged_forecast_is_what_its_version_answers_for_the_row_of_the_candles(world):
    """Scoring reads the stream's features from the offline table rather than computing them
    again: every forecast logged, by every version and shadow of every target, is the one the
    version answers for the row training's feature function computes from all the candles
    (and a return target's interval is its bin's multiplier times the row's sigma)."""
    from candlecast.modeling.target_evaluation import target_frame
    from candlecast.serving.targets import load_version
    from candlecast.targets import get_target

    settings, pair, versions, _ = world
    score_targets(pair, FIRST, None, settings)
    candles = validated_table(pair.stream, settings).read()
    for key in versions:
        name, horizon = key.rsplit("_h", 1)
        target = get_target(name, int(horizon))
        frame = target_frame(candles, "1h", pair.stream.market_key, target, labelled=False)
        frame = frame.set_index(frame["candle_ts"] + HOUR_MS)
        logged = read_forecasts(pair.stream.key, settings=settings, target_key=key)
        assert (logged["source"] == PLATFORM).sum() == 10 * 24 + 1  # shadows' rows beside
        folder = pair.stream.target_dir(settings.paths.models, key)
        for version, rows in logged.groupby("model_version"):
            model = load_version(target, folder / f"v{version}")
            row = frame.loc[rows["feature_ts"]]
            x = row[model.card.features].to_numpy(np.float32)
            want = np.asarray(model.session.run(None, {model.input_name: x})[0]).reshape(-1)
            np.testing.assert_allclose(rows["predicted"], want, rtol=1e-6)
            calibration = model.card.intervals
            if calibration is None:
                assert rows["lower"].isna().all()
                continue
            inputs = row[calibration.inputs].to_numpy(np.float64)
            half = calibration.row_multipliers(inputs, "0.9") * calibration.sigma(inputs)
            np.testing.assert_allclose((rows["upper"] - rows["lower"]) / 2, half, rtol=1e-9)


def test_a_candle_is_forecast_once_its_feature_row_is_written(
    trained_targets, btc_candles, tmp_path
):
    """Validated candles without a row in the offline table are not forecast (as the main
    target's are not: a candles run writes the rows before it scores); the run that writes
    them forecasts them. On a copy of the world of its own, with the day after :data:`LAST`
    validated."""
    from candlecast.features.online import offline_table

    world = target_world.copy(trained_targets, tmp_path / "home")
    pair, copy = world.pair, world.settings
    day = LAST + timedelta(days=1)
    after = btc_candles[(btc_candles["ts"] >= _ms(LAST)) & (btc_candles["ts"] < _ms(day))]
    validated_table(pair.stream, copy).upsert(after)
    assert len(after) == 24 and offline_table(pair.stream, copy).last_key() < _ms(LAST)
    for found in score_targets(pair, LAST, day, copy):
        assert (found.rows, found.logged, found.reason) == (0, 0, "no feature rows in the span")
    write_features(pair, LAST, LAST + timedelta(hours=12), copy)  # the first half's rows
    found = score_targets(pair, LAST, day, copy)
    assert [s.rows for s in found] == [12, 12]
    assert all(s.logged == s.rows + sum(s.shadows.values()) for s in found)
    write_features(pair, LAST, day, copy)
    found = score_targets(pair, LAST, None, copy)  # by default up to the newest row
    assert [s.rows for s in found] == [24, 24]
    # the second half's forecasts, as served and in the shadow, are the new ones
    assert all(2 * s.logged == s.rows + sum(s.shadows.values()) for s in found)
    for key in ("return_h4", "volatility_h24"):
        logged = _platform(pair, copy, key, _ms(LAST) + 1)
        assert logged["feature_ts"].tolist() == (after["ts"] + HOUR_MS).tolist()


def test_scoring_again_logs_nothing_twice(world):
    settings, pair, *_ = world
    score_targets(pair, FIRST, None, settings)
    again = score_targets(pair, None, None, settings)
    assert [s.logged for s in again] == [0, 0] and all(s.rows == 10 * 24 + 1 for s in again)


def test_a_target_without_decisions_is_not_scored(world, tmp_path):
    _, pair, *_ = world
    other = settings_in(tmp_path)
    found = score_targets(pair, FIRST, None, other)
    assert [s.reason for s in found] == ["no champion decision yet"] * 2
    path = history.target_history_path(pair.stream, "return_h4", other)
    assert not path.exists() and history.read(pair.stream, other, path) == []


def test_the_check_reports_each_target_s_realized_skill_from_the_log(world, tmp_path):
    """As of :data:`LAST`, the check's window holds rows of both versions of each target: the
    figures as served, and per version, are those of the logged forecasts joined with their
    realized outcomes (recomputed here from the log and the candles), "not judged yet" where
    a version has fewer than the minimum."""
    from candlecast.modeling.target_evaluation import target_frame
    from candlecast.monitoring.check import check_pair
    from candlecast.monitoring.store import MetricsStore
    from candlecast.targets import get_target

    settings, pair, versions, _ = world
    score_targets(pair, FIRST, None, settings)
    window = 24 * 8  # candles: reaching back before the second decision
    pair = pair.model_copy(
        update={
            "monitoring": pair.monitoring.model_copy(
                update={"window_candles": window, "min_forecasts": 100}
            )
        }
    )
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    result = check_pair(pair, LAST, settings=settings, store=store, keep_report=False)
    body = {t["key"]: t for t in result.to_dict()["targets"]}
    assert set(body) == set(versions)
    start = _ms(LAST) - window * HOUR_MS
    candles = validated_table(pair.stream, settings).read()
    for key, (old, new) in versions.items():
        name, horizon = key.rsplit("_h", 1)
        target = get_target(name, int(horizon))
        found = body[key]
        assert (found["version"], found["state"]) == (new, "judged")
        logged = _platform(pair, settings, key)
        realized = logged[(logged["target_ts"] > start) & (logged["target_ts"] <= _ms(LAST))]
        frame = target_frame(candles, "1h", pair.stream.market_key, target)
        labels = dict(zip(frame["candle_ts"] + HOUR_MS, frame["target"], strict=True))
        y = realized["feature_ts"].map(labels).to_numpy(np.float64)
        assert found["forecasts"] == len(realized) == window
        want = target.primary_score(y, realized["predicted"].to_numpy())
        assert found["score"] == pytest.approx(want, rel=1e-9)
        assert found["scores"][target.primary] == found["score"] and found["ratio"] > 0
        counts = realized.groupby("model_version").size().to_dict()
        assert {v: s["forecasts"] for v, s in found["by_version"].items()} == counts
        assert set(counts) == {old, new}
        # the first version's rows in the window are too few to judge, the second's are not
        assert counts[old] < 100 <= counts[new]
        state = f"not judged yet ({counts[old]} of 100 forecasts realized)"
        assert found["by_version"][old]["state"] == state
        assert found["by_version"][new]["state"] == "judged"
        if target.name == "return":
            assert 0.5 < found["coverage_90"] <= 1 and found["majority_rate"] >= 0.5
    # the metrics table keeps the figures as served and per version; the exporter says them
    stored = {r.target: r for r in store.target_checks(result.check_id)}
    assert stored["volatility_h24"].score == pytest.approx(body["volatility_h24"]["score"])
    from candlecast.monitoring.exporter import MonitoringCollector

    exported = {
        (
            family.name.removeprefix("candlecast_monitor_target_version_"),
            *s.labels.values(),
        ): s.value
        for family in MonitoringCollector(store).collect()
        if family.name.startswith("candlecast_monitor_target_version_")
        for s in family.samples
    }
    old, new = versions["volatility_h24"]
    figures = body["volatility_h24"]
    key = (pair.stream.key, "volatility_h24")
    assert exported[("judged", *key, "served", "qlike")] == 1.0
    assert exported[("ratio", *key, "served", "qlike")] == pytest.approx(figures["ratio"])
    assert exported[("forecasts", *key, "served", "qlike")] == figures["forecasts"]
    assert exported[("judged", *key, old, "qlike")] == 0.0  # not judged yet
    assert exported[("judged", *key, new, "qlike")] == 1.0
    for version in (old, new):
        count = figures["by_version"][version]["forecasts"]
        assert exported[("forecasts", *key, version, "qlike")] == count
    assert ("coverage", pair.stream.key, "return_h4", "served", "rmse") in exported


def test_candlecast_monitor_says_each_target_s_skill_as_served_and_per_version(
    world, tmp_path, monkeypatch
):
    """The default window as of :data:`LAST` reaches back before the first decision: the
    volatility target's rows realized in it are the 96 of the first version and the 121 of the
    second whose 24 candles had passed; the first version's are too few to judge on their own
    (100 needed)."""
    import json

    import yaml
    from typer.testing import CliRunner

    from candlecast.cli.main import app

    settings, pair, versions, _ = world
    score_targets(pair, FIRST - timedelta(days=2), None, settings)
    config = pair.model_dump(mode="json", exclude_defaults=True)
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump({"pairs": [config]}))
    monkeypatch.setenv("CANDLECAST_HOME", str(settings.home))
    monkeypatch.setenv("CANDLECAST_PAIRS", str(tmp_path / "pairs.yaml"))
    monkeypatch.setenv("COLUMNS", "200")  # one line per figure
    monkeypatch.delenv("CANDLECAST_METRICS_URL", raising=False)
    command = ["monitor", "--pair", pair.stream.key, "--as-of", f"{LAST:%Y-%m-%dT%H:%M:%S}"]
    payload = json.loads(CliRunner().invoke(app, [*command, "--json"]).stdout)
    assert payload["current"][0] < FIRST.isoformat()
    (figures,) = [t for t in payload["targets"] if t["key"] == "volatility_h24"]
    old, new = versions["volatility_h24"]
    assert (figures["forecasts"], figures["state"], figures["version"]) == (217, "judged", new)
    by_version = figures["by_version"]
    assert {v: f["forecasts"] for v, f in by_version.items()} == {old: 96, new: 121}
    assert by_version[old]["state"] == "not judged yet (96 of 100 forecasts realized)"
    assert by_version[new]["state"] == "judged" and by_version[new]["ratio"] > 0
    text = CliRunner().invoke(app, command)
    assert text.exit_code == 0, text.output
    assert f"target volatility_h24 as served (v{new} now): 217 realized, qlike ratio" in text.output
    assert f"    v{old}: 96 realized, qlike ratio" in text.output
    assert "(not judged yet (96 of 100 forecasts realized))" in text.output


def test_a_logged_interval_uses_the_multiplier_of_the_row_s_volatility_bin(world):
    """Return targets' cards calibrate one multiplier per ex-ante volatility bin; each logged
    90% interval is that bin's multiplier times the row's sigma, as the service scales a row
    (:meth:`IntervalCalibration.bin_of`, one row at a time)."""
    from candlecast.modeling.target_evaluation import target_frame
    from candlecast.serving.targets import load_version
    from candlecast.targets import get_target

    settings, pair, versions, logged = world
    _, new = versions["return_h4"]
    folder = pair.stream.target_dir(settings.paths.models, "return_h4") / f"v{new}"
    model = load_version(get_target("return", 4), folder)
    calibration = model.card.intervals
    assert calibration is not None and calibration.bin_column is not None
    per_bin = {m["0.9"] for m in calibration.bin_multipliers}
    assert len(per_bin) > 1, "the bins share one multiplier: the check below could not fail"
    candles = validated_table(pair.stream, settings).read(end_ms=_ms(LAST) + HOUR_MS)
    frame = target_frame(candles, "1h", pair.stream.market_key, model.target, labelled=False)
    frame = frame.assign(close_ms=frame["candle_ts"] + HOUR_MS).set_index("close_ms")
    rows = logged["return_h4"]
    bins = set()
    for feature_ts, lower, upper in rows[["feature_ts", "lower", "upper"]].itertuples(False):
        inputs = frame.loc[feature_ts, calibration.inputs].to_numpy(np.float64)
        number = calibration.bin_of(inputs)
        bins.add(number)
        want = calibration.for_bin(number).multipliers["0.9"] * calibration.sigma([inputs])[0]
        assert (upper - lower) / 2 == pytest.approx(want, rel=1e-9)
    assert len(bins) > 1, "every logged row fell into one bin: the check could not fail"
