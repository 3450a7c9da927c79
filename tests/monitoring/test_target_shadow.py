"""Every other target's gate loser is forecast in the shadow and judged on realized data.

On the world of :mod:`tests.monitoring.target_world` (each target decided on the window ending
at :data:`FIRST`, then at :data:`SECOND`, with LightGBM the only learned kind). On these
windows the gate serves a baseline for both targets (``drift`` for the 4-hour return, ``har``
for the 24-hour volatility), so LightGBM lost each time: it is exported and registered as the
challenger, named in the decision, forecast in the shadow point in time and judged against the
target as served by the target gate's rule.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from candlecast.data.ingestion import validated_table
from candlecast.modeling import history, registry, target_training
from candlecast.modeling.target_evaluation import target_frame
from candlecast.monitoring import target_skill
from candlecast.monitoring.decisions import Evidence, Thresholds, triggers
from candlecast.monitoring.shadow import shadows_in_force, target_shadow_skill
from candlecast.monitoring.target_scoring import score_targets
from candlecast.serving.forecast_log import PLATFORM, SHADOW, read_forecasts
from candlecast.serving.targets import load_version
from candlecast.targets import get_target
from tests.monitoring import target_world
from tests.monitoring.target_world import FIRST, HOUR_MS, LAST, SECOND
from tests.monitoring.target_world import ms as _ms

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(trained_targets, tmp_path_factory):
    """(settings, pair, {target key: [first result, second result]}), in this module's copy of
    the world; the candles from the first decision to :data:`LAST` scored."""
    world = target_world.copy(trained_targets, tmp_path_factory.mktemp("target_shadow") / "home")
    results = {a.target_key: [a, b] for a, b in zip(world.first, world.second, strict=True)}
    score_targets(world.pair, FIRST - timedelta(days=1), None, world.settings)
    return world.settings, world.pair, results


def _decided(pair, settings, key):
    path = history.target_history_path(pair.stream, key, settings)
    return history.read(pair.stream, settings, path)


def test_the_gate_s_loser_is_exported_and_recorded_but_not_served(world):
    settings, pair, results = world
    registry.configure(settings)
    client = registry.client()
    assert set(results) == {"return_h4", "volatility_h24"}
    for key, (first, second) in results.items():
        target = get_target(*_parts(key))
        name = pair.stream.target_model(key)
        folder = pair.stream.target_dir(settings.paths.models, key)
        for found in (first, second):
            assert not found.learned and found.challenger not in ("", found.version)
            # its own card, in its own folder, sha256 checked on load: it lost and says why
            shadow = load_version(target, folder / f"v{found.challenger}")
            assert (shadow.card.kind, shadow.card.version) == ("lightgbm", found.challenger)
            assert shadow.card.decision.startswith(
                "challenger in the shadow, not served: lightgbm lost the gate (serving the best "
                f"baseline, {found.kind}"
            )
            assert (
                shadow.card.interval_end
                == load_version(target, folder / f"v{found.version}").card.interval_end
            )
        # the champion link and alias are the second champion's; the challenger alias its loser
        assert (folder / "champion").resolve().name == f"v{second.version}"
        champion = client.get_model_version_by_alias(name, registry.CHAMPION)
        challenger = client.get_model_version_by_alias(name, registry.CHALLENGER)
        aliased = (str(champion.version), str(challenger.version))
        assert aliased == (second.version, second.challenger)
        lines = [(d.version, d.challengers) for d in _decided(pair, settings, key)]
        assert lines == [
            (first.version, (first.challenger,)),
            (second.version, (second.challenger,)),
        ]


def test_a_rerun_of_the_window_registers_no_new_version(world):
    settings, pair, results = world
    registry.configure(settings)
    client = registry.client()
    before = {key: _decided(pair, settings, key) for key in results}
    again = {r.target_key: r for r in target_training.train_targets(pair, SECOND, settings)}
    for key, (_, second) in results.items():
        found = again[key]
        assert found.reused and (found.version, found.challenger) == (
            second.version,
            second.challenger,
        )
        versions = client.search_model_versions(f"name = '{pair.stream.target_model(key)}'")
        assert len(versions) == 4  # two decisions, each a champion and a challenger
        assert _decided(pair, settings, key) == before[key]


def test_the_shadow_forecasts_each_candle_with_the_loser_of_the_decision_in_force(world):
    settings, pair, results = world
    for key, (first, second) in results.items():
        logged = read_forecasts(pair.stream.key, settings=settings, target_key=key)
        shadow = logged[logged["source"] == SHADOW]
        served = logged[logged["source"] == PLATFORM]
        closes = shadow["feature_ts"].to_numpy()
        # every candle the platform forecast, also by the shadow, once
        assert closes.tolist() == served["feature_ts"].tolist()
        assert closes.tolist() == np.arange(_ms(FIRST), _ms(LAST) + 1, HOUR_MS).tolist()
        by = shadow["model_version"].to_numpy()
        assert (by[closes < _ms(SECOND)] == first.challenger).all()
        assert (by[closes >= _ms(SECOND)] == second.challenger).all()
    # a shadow row is what the loser's exported model answers for that row's features
    target = get_target("volatility", 24)
    first, _ = results["volatility_h24"]
    folder = pair.stream.target_dir(settings.paths.models, target.key)
    model = load_version(target, folder / f"v{first.challenger}")
    candles = validated_table(pair.stream, settings).read(end_ms=_ms(SECOND))
    frame = target_frame(candles, "1h", pair.stream.market_key, target, labelled=False)
    row = frame[frame["candle_ts"] + HOUR_MS == _ms(SECOND) - HOUR_MS]
    x = row[model.card.features].to_numpy(np.float32)
    want = float(np.asarray(model.session.run(None, {model.input_name: x})[0]).reshape(-1)[0])
    logged = read_forecasts(
        pair.stream.key, _ms(SECOND) - HOUR_MS, _ms(SECOND), settings, target_key=target.key
    )
    shadow = logged[logged["source"] == SHADOW]
    assert shadow["model_version"].tolist() == [first.challenger]
    assert shadow["predicted"].iloc[0] == pytest.approx(want, rel=1e-5)
    assert shadow["predicted"].iloc[0] != pytest.approx(logged["predicted"].iloc[0], rel=1e-3)


def _parts(key: str) -> tuple[str, int]:
    name, horizon = key.rsplit("_h", 1)
    return name, int(horizon)


def _realized(world, key: str):
    """The target's forecasts as served and its shadows' in force, joined with the outcomes
    of the bundled candles (what the check joins)."""
    settings, pair, _ = world
    target = get_target(*_parts(key))
    decided = _decided(pair, settings, key)
    logged = read_forecasts(pair.stream.key, settings=settings, target_key=key)
    candles = validated_table(pair.stream, settings).read()
    frame = target_frame(candles, "1h", pair.stream.market_key, target)
    outcomes = target_skill.outcomes(frame, target, HOUR_MS)
    served = target_skill.join_outcomes(logged[logged["source"] == PLATFORM], outcomes)
    shadows = shadows_in_force(logged[logged["source"] == SHADOW], decided)
    return (
        target,
        target_skill.as_served(served, decided),
        target_skill.join_outcomes(shadows, outcomes),
    )


def test_a_shadow_better_on_realized_data_but_not_significantly_is_no_retrain_reason(world):
    """On the bundled candles after :data:`SECOND`, the 4-hour return's loser has a lower
    realized RMSE than the champion as served, but by 0.02% (the gate's margin is 0.1%) and
    with p near 0.08 (its alpha is 0.05): the gate would not promote it, so no reason."""
    _, pair, results = world
    target, served, shadows = _realized(world, "return_h4")
    _, second = results["return_h4"]
    judged = {s.version: s for s in target_shadow_skill(pair, target, shadows, served, 100)}
    skill = judged[second.challenger]
    assert skill.judged and skill.champions == (second.version,) and skill.forecasts > 100
    (comparison,) = skill.comparisons
    assert comparison.metric == "rmse" and comparison.score < comparison.opponent
    assert comparison.p_value > pair.training.gate.alpha and not skill.beats
    assert triggers(Evidence(shadows=(skill.evidence(),)), Thresholds(min_forecasts=100)) == []


def test_a_shadow_that_beats_the_champion_by_the_gate_s_rule_is_a_retrain_reason(world):
    """The 24-hour volatility's forecasts of the candles after :data:`SECOND`, realized as
    the loser forecast them: it beats the champion significantly, a retrain reason naming the
    target; with fewer realized rows than ``min_forecasts`` it is not judged yet."""
    _, pair, results = world
    target, served, shadows = _realized(world, "volatility_h24")
    _, second = results["volatility_h24"]
    mine = shadows[shadows["model_version"] == second.challenger]
    outcome = dict(zip(mine["feature_ts"], mine["predicted"], strict=True))
    realized = served.assign(realized=served["feature_ts"].map(outcome)).dropna(subset=["realized"])
    realized_as_said = mine.assign(realized=mine["predicted"])
    (skill,) = target_shadow_skill(pair, target, realized_as_said, realized, 100)
    assert skill.judged and skill.beats and skill.forecasts == len(mine) > 100
    assert skill.comparisons[0].metric == "qlike" and skill.comparisons[0].score == 0
    (reason,) = triggers(Evidence(shadows=(skill.evidence(),)), Thresholds(min_forecasts=100))
    assert reason.startswith(
        f"shadow challenger volatility_h24 v{second.challenger} beats champion "
        f"v{second.version} on {len(mine)} realized candles (qlike 0.000x the champion's, p="
    )
    (few,) = target_shadow_skill(pair, target, realized_as_said, realized, len(mine) + 1)
    assert not few.judged and not few.beats
    assert triggers(Evidence(shadows=(few.evidence(),)), Thresholds(min_forecasts=100)) == []


def test_the_check_shows_each_target_s_shadows_judged_as_served(world, tmp_path):
    """As of :data:`LAST`, the check's figures for each target carry its shadow challengers,
    judged against the target as served on the same rows; none beats its champion on the
    bundled candles, so the check names no shadow reason."""
    from candlecast.monitoring.check import check_pair
    from candlecast.monitoring.store import MetricsStore

    settings, pair, results = world
    pair = pair.model_copy(
        update={
            "monitoring": pair.monitoring.model_copy(
                update={"window_candles": 24 * 8, "min_forecasts": 100}
            )
        }
    )
    store = MetricsStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    result = check_pair(pair, LAST, settings=settings, store=store, keep_report=False)
    body = {t["key"]: t for t in result.to_dict()["targets"]}
    for key, (first, second) in results.items():
        shadows = {s["version"]: s for s in body[key]["shadows"]}
        assert set(shadows) <= {first.challenger, second.challenger}
        found = shadows[second.challenger]
        assert found["target"] == key and found["champions"] == [second.version]
        assert found["state"] == "judged" and found["beats_champion"] is False
        assert found["metric"] == get_target(*_parts(key)).primary
    assert "shadow challenger" not in result.decision.reason
    # the metrics table keeps them per target, and the exporter says them
    from candlecast.monitoring.exporter import MonitoringCollector

    details = store.target_details(result.check_id)
    stored = {(r.target, r.version): r for r in details.target_shadows}
    exported = {
        (family.name.removeprefix("candlecast_monitor_target_shadow_"), *s.labels.values()): s.value
        for family in MonitoringCollector(store).collect()
        if family.name.startswith("candlecast_monitor_target_shadow_")
        for s in family.samples
    }
    for key, (_, second) in results.items():
        found = {s["version"]: s for s in body[key]["shadows"]}[second.challenger]
        row = stored[(key, second.challenger)]
        assert (row.champions, row.forecasts, row.judged, row.beats) == (
            second.version, found["forecasts"], True, False,
        )  # fmt: skip
        assert row.vs_champion == pytest.approx(found["rmse_vs_champion"])
        labels = (pair.stream.key, key, second.challenger, second.version, found["metric"])
        assert exported[("beats_champion", *labels)] == 0.0
        assert exported[("vs_champion", *labels)] == pytest.approx(found["rmse_vs_champion"])
        assert exported[("forecasts", *labels)] == found["forecasts"]


def test_candlecast_monitor_says_each_target_s_shadow_against_its_champion(
    world, tmp_path, monkeypatch
):
    import itertools

    import yaml
    from typer.testing import CliRunner

    from candlecast.cli.main import app

    settings, pair, results = world
    config = pair.model_dump(mode="json", exclude_defaults=True)
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump({"pairs": [config]}))
    monkeypatch.setenv("CANDLECAST_HOME", str(settings.home))
    monkeypatch.setenv("CANDLECAST_PAIRS", str(tmp_path / "pairs.yaml"))
    monkeypatch.setenv("COLUMNS", "200")  # one line per figure
    monkeypatch.delenv("CANDLECAST_METRICS_URL", raising=False)
    command = ["monitor", "--pair", pair.stream.key, "--as-of", f"{LAST:%Y-%m-%dT%H:%M:%S}"]
    text = CliRunner().invoke(app, command)
    assert text.exit_code == 0, text.output
    _, second = results["volatility_h24"]
    lines = text.output.splitlines()
    first = lines.index(next(row for row in lines if row.startswith("  target volatility_h24 ")))
    # the target's versions, then its shadows, indented under it
    block = list(itertools.takewhile(lambda row: row.startswith("    "), lines[first + 1 :]))
    line = f"    shadow v{second.challenger} vs v{second.version}: "
    (found,) = [row for row in block if row.startswith(line)]
    assert " realized, qlike " in found and "x the champion's (p=" in found
