"""The platform forecasts every candle itself, point in time, and monitoring judges those.

A stream of its own (the bundled BTC/USD hourly file replayed as exchange 'scored') in its own
data directory: a first pipeline run trains and deploys a champion as of day 0; three more
candles days are materialized and scored by the candles stage alone (no ``/predict`` call);
a second train decision as of day 2 is recorded. Every feature row closing from day 0 on is
forecast once by the version in force for it, never by a model trained on later data, and a
re-run logs nothing twice. ``check_pair`` then judges the platform's forecasts, with realized
skill per version and for the stream as served; as of day 1 it reports the day-0 champion
and its window even after the day-2 decision (point in time).

Shadow challengers (issue 16): each decision's losing challenger is exported and forecasts the
same candles in the shadow, point in time and once. Two planted decision histories judge a
shadow on realized rows: persistence in the shadow of a deliberately overfitted LightGBM
champion beats it (a retrain reason), the overfitted model in the shadow of persistence does
not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.helpers import BTC_FILE

pytestmark = pytest.mark.slow

DAY0 = datetime(2021, 11, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
#: When the planted decisions hold from: the first candle of day 3's 60-candle check window.
PLANTED = DAY0 + timedelta(hours=12)

PAIRS = f"""\
pairs:
  - symbol: BTC/USD
    exchange: scored
    replay_file: {BTC_FILE}
    timeframe: 1h
    start: 2021-10-01T00:00:00Z
    training:
      kinds: [lightgbm]
      train_days: 12
      min_train_rows: 200
      params: {{lightgbm: {{n_estimators: 30}}}}
      targets: [{{target: return, horizons: [1]}}]
    monitoring: {{window_candles: 60, min_forecasts: 50}}
"""


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(pair, first decision, second decision) after the runs described above."""
    import os

    tmp = tmp_path_factory.mktemp("scoring")
    (tmp / "pairs.yaml").write_text(PAIRS)
    saved = {
        k: os.environ.get(k)
        for k in ("CANDLECAST_HOME", "CANDLECAST_PAIRS", "CANDLECAST_METRICS_URL")
    }
    os.environ.pop("CANDLECAST_METRICS_URL", None)
    os.environ["CANDLECAST_HOME"] = str(tmp / "home")
    os.environ["CANDLECAST_PAIRS"] = str(tmp / "pairs.yaml")
    try:
        from candlecast.config import load_pairs
        from candlecast.modeling import history
        from candlecast.orchestration import stages

        (pair,) = load_pairs().pairs
        first = stages.run_all(pair, DAY0 - timedelta(days=1), DAY0)
        for day in range(3):
            start = DAY0 + timedelta(days=day)
            stages.candles_run(pair, start, start + timedelta(days=1))
        trained = stages.train(pair, DAY0 + timedelta(days=2))
        decision = stages.promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
        second = stages.deploy(pair, stages.export(pair, decision), decision)
        yield pair, first, second, history.read(pair.stream)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_every_candle_after_the_first_decision_is_forecast_once_by_the_model_in_force(scored):
    from candlecast.modeling import history
    from candlecast.serving.forecast_log import PLATFORM, SHADOW, read_forecasts

    pair, first, second, decided = scored
    assert [d.since for d in decided] == [DAY0, DAY0 + timedelta(days=2)]
    assert decided[0].version == first.promote.champion_version
    logged = read_forecasts(pair.stream.key)
    assert set(logged["source"]) <= {PLATFORM, SHADOW}  # nobody called /predict
    logged = logged[logged["source"] == PLATFORM]
    since_ms = int(DAY0.timestamp() * 1000)
    # nothing before the first decision: no model existed for those candles
    assert logged["feature_ts"].min() == since_ms
    in_force = history.versions_at(decided, logged["feature_ts"].to_numpy())
    as_served = logged[logged["model_version"].to_numpy() == in_force]
    # every hourly row from day 0 to the end of day 3, once, by the version in force for it
    closes = np.arange(since_ms, since_ms + 3 * 24 * HOUR_MS + 1, HOUR_MS)
    assert as_served["feature_ts"].tolist() == closes.tolist()
    # no row was forecast by a model decided after it (point in time)
    for version, rows in logged.groupby("model_version"):
        earliest = min(d.since for d in decided if d.version == version)
        assert rows["feature_ts"].min() >= int(earliest.timestamp() * 1000)
    assert second.scored is not None and second.scored.rows >= 24


def test_scoring_again_logs_nothing_twice(scored):
    from candlecast.monitoring.scoring import score
    from candlecast.serving.forecast_log import read_forecasts

    pair, *_ = scored
    before = len(read_forecasts(pair.stream.key))
    again = score(pair)
    assert again.rows >= 3 * 24 and again.logged == 0
    assert len(read_forecasts(pair.stream.key)) == before


def test_monitoring_judges_the_platform_forecasts_as_of_its_interval(scored):
    from candlecast.monitoring.check import check_pair
    from candlecast.monitoring.store import MetricsStore

    pair, first, _, decided = scored
    store = MetricsStore()
    end = DAY0 + timedelta(days=3)
    result = check_pair(pair, end, store=store, keep_report=False)
    body = result.to_dict()
    assert body["realized_source"] == "platform"
    assert body["realized"]["forecasts"] == 60  # the window; the newest not realized yet
    assert body["realized_state"] == "judged"
    assert set(body["realized_by_version"]) == {d.version for d in decided}
    assert body["forecasts_logged"] >= 61  # the newest candle's forecast counts as logged
    # the reference is the latest decision's training window, cut where the current window
    # starts (the day-2 champion trained on candles the day-3 check's window holds)
    assert result.current == (end - timedelta(hours=60), end)
    assert decided[-1].window_end > result.current[0]
    assert result.reference == (decided[-1].window_start, result.current[0])
    # as of day 1 the day-0 champion is in force, whatever was decided since
    past = check_pair(pair, DAY0 + timedelta(days=1), store=store, keep_report=False)
    assert past.champion_version == first.promote.champion_version
    assert past.reference == (
        decided[0].window_start,
        min(decided[0].window_end, past.current[0]),
    )
    assert past.reference[1] <= past.current[0]
    assert past.realized is not None and past.realized.forecasts == 24
    assert past.realized_state.startswith("not judged yet (24 of 50")


def test_a_retrain_request_on_an_unchanged_window_is_recorded_as_changing_nothing(scored):
    from mlflow import MlflowClient

    from candlecast.modeling import registry
    from candlecast.orchestration import stages

    pair, *_ = scored
    again = stages.prepare_training(pair, DAY0 + timedelta(days=2), "data drift: a test request")
    assert again.reused
    registry.configure()
    tags = MlflowClient().get_run(again.parent_run_id).data.tags
    assert tags["trigger.reason.reused"] == (
        "data drift: a test request (window and data unchanged: nothing retrained)"
    )


def test_the_run_summary_says_what_was_ingested_decided_and_served(scored):
    from candlecast.cli.app import run_summary

    _, first, _, _ = scored
    lines = dict(run_summary(first))
    assert list(lines)[:4] == ["ingested", "validated", "features", "trained"]
    assert first.promote.champion_version in lines["decision"]
    assert first.promote.reason in lines["decision"]
    assert lines["served"].startswith(first.deploy.bento_model)
    assert "price" in lines["served"] and all(len(k) <= 10 for k in lines)


def test_a_lost_online_store_is_rebuilt_by_the_next_run(scored):
    """Issue 20 #9: `feast apply` was skipped on its stamp alone, so a deleted online.db was
    never re-created and every later run failed on 'no such table'."""
    from candlecast.features import featurestore
    from candlecast.orchestration import stages
    from candlecast.settings import get_settings

    pair, *_ = scored
    (get_settings().paths.feast / "online.db").unlink()
    end = DAY0 + timedelta(days=3)
    stages.materialize(pair, end - timedelta(days=1), end)  # the next run's materialize
    store = featurestore.feature_store()
    online = featurestore.online_features(store, pair.stream, ["candle_ts"])
    assert online["candle_ts"] == int(end.timestamp() * 1000) - HOUR_MS
    assert featurestore.ensure_applied(stages.configured_timeframes()) is False  # whole again


def test_scoring_loads_only_the_versions_in_force_and_a_tampered_one_fails_the_stage(scored):
    """Scoring hashes and loads a model per version it uses, not per version ever decided; a
    tampered model it needs is a permanent error that fails the stage, not a log line.

    An older decision is planted before the first one: a copy of the champion as version 99,
    in force for the day before day 0, its file tampered."""
    import shutil
    from dataclasses import replace

    from candlecast.errors import TamperedModelError
    from candlecast.modeling import history
    from candlecast.monitoring.scoring import score
    from candlecast.orchestration import stages
    from candlecast.settings import get_settings

    pair, first, _, decided = scored
    models = get_settings().paths.models
    served = pair.stream.model_dir(models, first.promote.champion_version)
    planted = pair.stream.model_dir(models, "99")
    shutil.copytree(served, planted)
    (planted / "model.onnx").write_bytes((served / "model.onnx").read_bytes() + b"\0")
    path = history.history_path(pair.stream)
    kept = path.read_text()
    history.record(pair.stream, replace(decided[0], since=DAY0 - timedelta(days=1), version="99"))
    try:
        # only the versions in force from day 2 are read: the tampered file is not even opened
        after = score(pair, DAY0 + timedelta(days=2), DAY0 + timedelta(days=3))
        assert set(after.versions) == {decided[-1].version} and after.rows == 24
        with pytest.raises(TamperedModelError, match=r"v99/model\.onnx"):
            stages.score(pair, DAY0 - timedelta(days=1), DAY0)
    finally:
        path.write_text(kept)
        shutil.rmtree(planted)


def test_the_losing_challenger_forecasts_every_candle_in_the_shadow_point_in_time_once(scored):
    from candlecast.modeling import history
    from candlecast.monitoring.exporter import newest_realized
    from candlecast.monitoring.scoring import score
    from candlecast.serving.forecast_log import SHADOW, read_forecasts
    from candlecast.settings import get_settings

    pair, first, _, decided = scored
    # every gate decision names the challenger it judged unless the challenger won
    for d in decided:
        assert d.how == "gate"
    challenger = first.promote.challenger_version
    lost = challenger != first.promote.champion_version
    assert decided[0].challengers == ((challenger,) if lost else ())
    shadowed = [d for d in decided if d.challengers]
    assert shadowed, "no decision kept a losing challenger: the scenario tests nothing"
    logged = read_forecasts(pair.stream.key)
    shadow = logged[logged["source"] == SHADOW]
    models = get_settings().paths.models
    judged = 0
    for version in {v for d in shadowed for v in d.challengers}:
        assert (pair.stream.model_dir(models, version) / "model.onnx").exists()  # exported
        rows = shadow[shadow["model_version"] == version]["feature_ts"].to_numpy()
        assert len(set(rows.tolist())) == len(rows)  # each candle once
        # never before a decision naming it held (point in time)
        earliest = min(d.since for d in shadowed if version in d.challengers)
        assert rows.min() >= int(earliest.timestamp() * 1000)
        # every close at which the decision in force names it (rows forecast before a later
        # decision was recorded stay logged; monitoring picks by the history, as for champions)
        since_ms = int(DAY0.timestamp() * 1000)
        closes = np.arange(since_ms, since_ms + 3 * 24 * HOUR_MS + 1, HOUR_MS)
        expected = closes[history.shadows_at(decided, closes, version)]
        in_force = rows[history.shadows_at(decided, rows, version)]
        assert in_force.tolist() == expected.tolist() and len(expected) >= 24
        judged += len(in_force)
    # the exporter's newest forecast beside its outcome is a served one, never a shadow's
    assert newest_realized()[pair.stream.key]["source"] != SHADOW
    before = len(logged)
    again = score(pair)  # every row again, by the history as it is now: nothing new
    assert again.logged == 0 and sum(again.shadows.values()) == judged == again.rows
    assert len(read_forecasts(pair.stream.key)) == before


@pytest.fixture(scope="module")
def rivals(scored):
    """(persistence version, overfitted LightGBM version): two registered, exported versions
    of the stream whose realized skill differs clearly. The LightGBM one is trained on the
    window ending at noon of day 0 with settings that fit noise (many deep trees, no shrinkage, no
    early stopping): on hourly returns it forecasts far worse than 'no change'."""
    from candlecast.modeling import promotion
    from candlecast.orchestration import stages

    pair, _, _, decided = scored
    noisy = {
        "n_estimators": 300,
        "learning_rate": 0.3,
        "num_leaves": 31,
        "min_child_samples": 2,
        "reg_lambda": 0.0,
        "early_stopping_rounds": 0,
    }
    training = pair.training.model_validate(
        {**pair.training.model_dump(), "params": {"lightgbm": noisy}}
    )
    overfit_pair = pair.model_copy(update={"training": training})
    trained = stages.train(overfit_pair, PLANTED)
    decision = promotion.promote(
        overfit_pair, trained.challenger.run_id, trained.challenger.model_uri, commit=False
    )
    overfit = decision.challenger_version
    stages.export_version(pair, overfit)
    baseline = [d.version for d in decided if d.kind == "persistence"]
    assert baseline, "the scenario's gate never served persistence: nothing to plant"
    stages.export_version(pair, baseline[0])
    return baseline[0], overfit


def _planted_check(pair, champion: str, kind: str, shadow: str):
    """Check day 3 as if ``champion`` had served from :data:`PLANTED` (the start of the
    check's window) with ``shadow`` in the shadow (a planted decision history, restored
    afterwards)."""
    from typer.testing import CliRunner

    from candlecast.cli.main import app
    from candlecast.modeling import history
    from candlecast.monitoring.check import check_pair
    from candlecast.monitoring.scoring import score
    from candlecast.monitoring.store import MetricsStore

    path = history.history_path(pair.stream)
    kept = path.read_text()
    since = PLANTED
    planted = history.Decided(
        since, champion, kind, DAY0 - timedelta(days=11), since, "gate", True, since, (shadow,)
    )
    path.write_text(planted.to_json() + "\n")
    try:
        scored = score(pair)
        assert scored.shadows.get(shadow, 0) == 61  # noon of day 0 to day 3, point in time
        end = DAY0 + timedelta(days=3)
        text = CliRunner().invoke(
            app, ["monitor", "--pair", pair.stream.key, "--as-of", f"{end:%Y-%m-%dT%H:%M:%S}"]
        )
        assert text.exit_code == 0, text.output
        assert f"shadow v{shadow} vs champion v{champion}: 60 realized" in text.output
        return check_pair(pair, end, store=MetricsStore(), keep_report=False)
    finally:
        path.write_text(kept)


def test_a_shadow_that_beats_the_champion_on_realized_candles_is_a_retrain_reason(scored, rivals):
    pair, *_ = scored
    baseline, overfit = rivals
    result = _planted_check(pair, overfit, "lightgbm", baseline)
    (judged,) = result.shadows
    body = result.to_dict()["shadows"][0]
    assert body["version"] == baseline and body["champions"] == [overfit]
    assert body["forecasts"] == 60 and body["state"] == "judged"  # the window's realized rows
    assert body["rmse_ratio"] == pytest.approx(1.0)  # persistence is persistence
    assert body["champion_rmse_ratio"] > 1.05 and body["rmse_vs_champion"] < 0.95
    assert judged.beats and body["p_value"] < pair.training.gate.alpha
    reason = next(t for t in result.decision.triggers if t.startswith("shadow challenger"))
    assert reason.startswith(
        f"shadow challenger v{baseline} beats champion v{overfit} on 60 realized candles"
    )
    assert "p=" in reason and result.decision.retrain and reason in result.decision.reason
    # the metrics table keeps it (Prometheus and Grafana read it from there)
    from candlecast.monitoring.store import MetricsStore

    (stored,) = MetricsStore().target_details(result.check_id).shadows
    assert (stored.version, stored.champions, stored.forecasts) == (baseline, overfit, 60)
    assert stored.beats and stored.rmse_vs_champion == pytest.approx(body["rmse_vs_champion"])


def test_a_shadow_worse_than_the_champion_is_no_reason(scored, rivals):
    pair, *_ = scored
    baseline, overfit = rivals
    result = _planted_check(pair, baseline, "persistence", overfit)
    (judged,) = result.shadows
    assert judged.version == overfit and judged.forecasts == 60 and judged.judged
    assert not judged.beats and judged.evidence().rmse_vs_champion > 1.05
    assert not [t for t in result.decision.triggers if t.startswith("shadow")]
    assert "shadow" not in result.decision.reason
