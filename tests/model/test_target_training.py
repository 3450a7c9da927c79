"""Target training against a real MLflow store on real BTC/USD candles: each configured
(target, horizon) gets a gated, registered, exported champion whose model card is the same in
MLflow, in its ONNX model and in what the service answers; a re-run reuses it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
from mlflow import MlflowClient

from candlecast.data.ingestion import validated_table
from candlecast.evaluation import interval_sigma
from candlecast.features.engineering import compute_features
from candlecast.features.featurestore import write_features
from candlecast.features.volatility import volatility_features
from candlecast.modeling import registry, target_training
from candlecast.modeling.card import IntervalCalibration, ModelCard
from candlecast.serving import targets as served
from tests.helpers import btc_pair, settings_in

pytestmark = pytest.mark.slow

END = datetime(2022, 2, 1, tzinfo=UTC)
TARGETS = [{"target": "return", "horizons": [1, 4]}, {"target": "volatility", "horizons": [24]}]


@pytest.fixture(scope="module")
def world(tmp_path_factory, btc_candles):
    home = tmp_path_factory.mktemp("targets")
    settings = settings_in(home)
    pair = btc_pair(train_days=40, targets=TARGETS, kinds=["lightgbm"])
    end_ms = int(END.timestamp() * 1000)
    candles = btc_candles[btc_candles["ts"] < end_ms].tail(4000)
    validated_table(pair.stream, settings).upsert(candles)
    found = target_training.train_targets(pair, END, settings)
    return settings, pair, found


def test_each_target_gets_a_registered_exported_champion(world):
    _, pair, found = world
    assert [f.target_key for f in found] == ["return_h4", "volatility_h24"]
    client = MlflowClient()
    for champion in found:
        name = pair.stream.target_model(champion.target_key)
        version = client.get_model_version_by_alias(name, "champion")
        assert str(version.version) == champion.version
        assert version.description and champion.kind in version.description
        folder = Path(champion.path)
        assert folder.is_symlink() and folder.resolve().name == f"v{champion.version}"
        stored = ModelCard.model_validate_json((folder / "card.json").read_text())
        embedded = ModelCard.from_onnx(onnx.load(str(folder / "model.onnx")))
        logged = ModelCard.model_validate_json(
            Path(client.download_artifacts(version.run_id, "card.json")).read_text()
        )
        assert stored == embedded == logged
        assert (stored.version, stored.kind, stored.target_key) == (
            champion.version, champion.kind, champion.target_key,
        )  # fmt: skip
        assert stored.train_end < stored.holdout_start  # the embargo lies between
        assert stored.holdout_end <= END.isoformat()
        assert stored.decision == champion.reason


def test_volatility_champion_is_the_best_baseline_unless_beaten(world):
    _, _, found = world
    volatility = next(f for f in found if f.target_key == "volatility_h24")
    if volatility.learned:
        assert "beats the best baseline" in volatility.reason
    else:
        assert volatility.kind in ("persistence", "ewma", "har")
        assert "serving the best baseline" in volatility.reason


def test_the_service_answers_what_mlflow_calls_champion(world):
    settings, pair, found = world
    loaded = served.load(pair, settings, {})
    # the online row is what materialize stores: the feature function's row of the newest
    # candle (this test has no Feast store)
    candles = validated_table(pair.stream, settings).read()
    newest = compute_features(candles, "1h", pair.stream.market_key).iloc[-1]

    def online(columns: list[str]) -> dict:
        return {c: newest[c] for c in columns}

    answers = served.forecasts(pair, settings, loaded, 0.0, online)
    client = MlflowClient()
    by_key = {a["key"]: a for a in answers.answers}
    assert set(by_key) == {"return_h4", "volatility_h24"} and not answers.missing
    for champion in found:
        name = pair.stream.target_model(champion.target_key)
        alias = client.get_model_version_by_alias(name, "champion")
        assert by_key[champion.target_key]["model"]["version"] == str(alias.version)
    vol = by_key["volatility_h24"]
    assert vol["sigma"] == pytest.approx(np.sqrt(vol["variance"]))
    assert 0.1 < vol["annualized_volatility"] < 5  # BTC: tens of percent a year
    ret = by_key["return_h4"]
    # the served sigma is the card's fitted sigma of the newest row's volatility features
    card = next(s.card for s in loaded if s.target.key == "return_h4")
    assert card.intervals is not None and card.intervals.source == "qlike_log_linear"
    row = volatility_features(candles, "1h", (4,)).iloc[[-1]]
    want = interval_sigma.SigmaFit(
        tuple(card.intervals.columns), tuple(card.intervals.weights), card.intervals.intercept
    ).sigma(row[card.intervals.columns].to_numpy())[0]
    assert ret["intervals"]["sigma"] == pytest.approx(want, rel=1e-9)
    bands = ret["intervals"]["levels"]
    assert bands["0.8"]["return"][1] < bands["0.9"]["return"][1] < bands["0.95"]["return"][1]
    main = answers.main_intervals
    assert (
        main is not None
        and main["levels"]["0.9"]["return"][0] < 0 < main["levels"]["0.9"]["return"][1]
    )
    assert json.loads(json.dumps(answers.answers))  # plain JSON


def test_a_rerun_of_the_same_window_reuses_the_run_and_version(world):
    settings, pair, found = world
    again = target_training.train_targets(pair, END, settings)

    def outcome(results):
        return [(f.target_key, f.version, f.challenger) for f in results]

    assert outcome(again) == outcome(found)
    assert all(f.reused for f in again)
    registry.configure(settings)
    for champion in found:
        name = pair.stream.target_model(champion.target_key)
        # the champion, and the gate's losing learned kind when one lost (the shadow's)
        count = 2 if champion.challenger else 1
        assert len(MlflowClient().search_model_versions(f"name = '{name}'")) == count


def test_each_target_decision_is_recorded_in_its_own_history_once(world):
    """The target's decision history says which version serves from which data time on (the
    end of its training window), as the main champion's does; a re-run adds nothing."""
    from candlecast.modeling import history

    settings, pair, found = world
    target_training.train_targets(pair, END, settings)  # a re-run: reused, recorded already
    for champion in found:
        path = history.target_history_path(pair.stream, champion.target_key, settings)
        assert path.parent.name == champion.target_key
        (decided,) = history.read(pair.stream, settings, path)
        assert (decided.since, decided.version, decided.kind) == (
            END, champion.version, champion.kind,
        )  # fmt: skip
        assert decided.how == "gate" and decided.changed and decided.window_end == END
        assert decided.window_start < END
        # the losing learned kind, forecast in the shadow (tests/monitoring/test_target_shadow)
        assert decided.challengers == ((champion.challenger,) if champion.challenger else ())
    assert history.read(pair.stream, settings) == []  # the main history is untouched


def test_monitoring_scores_each_target_on_the_candles_that_followed(world, btc_candles):
    from datetime import timedelta

    from candlecast.monitoring.target_scoring import score_targets
    from candlecast.monitoring.targets import realized_targets

    settings, pair, found = world
    after = btc_candles[btc_candles["ts"] >= int(END.timestamp() * 1000)].head(24 * 20)
    validated_table(pair.stream, settings).upsert(after)
    write_features(pair, END, END + timedelta(days=20), settings)  # as the candles runs do
    score_targets(pair, END, None, settings)  # the platform forecasts the candles as they come
    span = (END, END + timedelta(days=20))
    judged = {t.key: t for t in realized_targets(pair, span, settings, min_forecasts=50)}
    assert set(judged) == {"return_h4", "volatility_h24"}
    volatility, returns = judged["volatility_h24"], judged["return_h4"]
    # every candle opening from END on whose outcome was realized by the window's end
    assert volatility.metric == "qlike" and volatility.forecasts == 19 * 24
    assert returns.forecasts == 20 * 24 - 4 and returns.state == "judged"
    assert volatility.ratio is not None and 0 < volatility.ratio < 1.5
    assert returns.coverage_90 is not None and 0.6 < returns.coverage_90 <= 1
    for champion in found:
        (version,) = judged[champion.target_key].by_version
        assert version == champion.version == judged[champion.target_key].version


def test_monitoring_moves_the_interval_state_and_the_service_serves_it(world, btc_candles):
    from datetime import timedelta

    from candlecast.monitoring.target_scoring import score_targets
    from candlecast.monitoring.targets import main_aci, realized_targets
    from candlecast.serving import aci

    settings, pair, _ = world
    after = btc_candles[btc_candles["ts"] >= int(END.timestamp() * 1000)].head(24 * 20)
    validated_table(pair.stream, settings).upsert(after)
    write_features(pair, END, END + timedelta(days=20), settings)  # as the candles runs do
    span = (END, END + timedelta(days=20))
    score_targets(pair, END, None, settings)  # the newest row's figures come from the log
    first = {t.key: t for t in realized_targets(pair, span, settings)}
    main = main_aci(pair, span, settings)
    folder = pair.stream.target_dir(settings.paths.models, "return_h4")
    card = ModelCard.model_validate_json((folder / "champion" / "card.json").read_text())
    calibration = card.intervals
    assert calibration is not None and calibration.bin_column == "rv_24"
    # one state per volatility bin, each started from its bin's multipliers
    states = [aci.read_state(aci.state_path(folder, k)) for k in range(3)]
    assert all(s is not None for s in states) and not aci.state_path(folder).exists()
    for k, each in enumerate(states):
        assert each is not None
        assert each.identity == aci.identity(calibration.for_bin(k), card.version)
        assert set(each.levels) == {"0.8", "0.9", "0.95"} and each.levels["0.9"].judged > 0
    assert sum(s.levels["0.9"].judged for s in states if s is not None) > 400
    assert [(r.target, r.level, r.judged) for r in first["return_h4"].aci] == [
        (f"return_h4:bin{k}", level, s.levels[level].judged)
        for k, s in enumerate(states)
        if s is not None
        for level in ("0.8", "0.9", "0.95")
    ]
    assert {r.target for r in main} == {f"return_h1:bin{k}" for k in range(3)}
    # the served bands use the state of the newest row's bin
    candles = validated_table(pair.stream, settings).read()
    newest_volatility = volatility_features(candles, "1h", (4,)).iloc[-1]
    number = calibration.bin_of(newest_volatility[calibration.inputs].to_numpy(np.float64))
    main_calibration = IntervalCalibration.model_validate_json(
        (folder.parent / "return_h1" / served.INTERVALS).read_text()
    )
    main_bin = main_calibration.bin_of(
        newest_volatility[main_calibration.inputs].to_numpy(np.float64)
    )
    main_90 = next(r for r in main if r.target == f"return_h1:bin{main_bin}" and r.level == "0.9")
    path = aci.state_path(folder, number)
    state = states[number]
    assert state is not None
    assert first["volatility_h24"].newest_forecast is not None
    assert 0.05 < first["volatility_h24"].newest_forecast < 5  # annualized
    # the same window again: every outcome was judged already, nothing moves
    stamp = path.stat().st_mtime_ns
    again = {t.key: t for t in realized_targets(pair, span, settings)}
    assert again["return_h4"].aci == first["return_h4"].aci and path.stat().st_mtime_ns == stamp

    loaded = served.load(pair, settings, {})
    newest = compute_features(candles, "1h", pair.stream.market_key).iloc[-1]

    def bands() -> tuple[dict, dict]:
        found = served.forecasts(pair, settings, loaded, 0.0, lambda cs: {c: newest[c] for c in cs})
        by_key = {a["key"]: a for a in found.answers}
        assert found.main_intervals is not None
        return by_key["return_h4"]["intervals"], found.main_intervals

    h4, h1 = bands()
    assert h4["method"].startswith("adaptive conformal")
    for level, band in h4["levels"].items():
        assert band["multiplier"] == state.levels[level].multiplier
        assert band["aci_level"] == pytest.approx(1 - state.levels[level].alpha)
        half = (band["return"][1] - band["return"][0]) / 2
        assert half == pytest.approx(band["multiplier"] * h4["sigma"])
    assert h1["levels"]["0.9"]["aci_level"] == pytest.approx(1 - main_90.alpha)
    # a state moved by misses widens the served bands at once
    wider = state.levels["0.9"].model_copy(update={"alpha": 0.02, "multiplier": 3.5})
    aci.write_state(path, state.model_copy(update={"levels": state.levels | {"0.9": wider}}))
    h4, _ = bands()
    assert h4["levels"]["0.9"]["multiplier"] == 3.5 and h4["levels"]["0.9"]["aci_level"] == 0.98
    # a state of another champion version is not used: the card's multipliers are
    aci.write_state(path, state.model_copy(update={"identity": "0:stale"}))
    h4, _ = bands()
    assert h4["method"].startswith("normalized conformal")
    assert h4["levels"]["0.9"]["multiplier"] == calibration.bin_multipliers[number]["0.9"]
    assert h4["levels"]["0.9"]["aci_level"] == 0.9
    # and the next check starts the new state from the champion's card
    realized_targets(pair, span, settings)
    restarted = aci.read_state(path)
    assert restarted is not None and restarted.identity == state.identity
    assert restarted.levels == state.levels


def test_a_young_stream_skips_the_targets_its_history_cannot_feed(tmp_path, btc_candles):
    settings = settings_in(tmp_path)
    pair = btc_pair(train_days=10, targets=TARGETS, kinds=["lightgbm"])
    end_ms = int(END.timestamp() * 1000)
    validated_table(pair.stream, settings).upsert(btc_candles[btc_candles["ts"] < end_ms].tail(300))
    found = target_training.train_targets(pair, END, settings)
    assert [(f.target_key, f.skipped) for f in found] == [
        ("return_h4", True),
        ("volatility_h24", True),
    ]
    assert all("volatility features need" in f.reason for f in found)
