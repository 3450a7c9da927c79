"""The replay of the retraining loop on the bundled BTC/USD hourly candles: triggers stay
quiet in a calm period and fire after a planted regime change, every forecast comes from a
champion trained before its candle, and the JSON and the CLI have their promised shape."""

from __future__ import annotations

import itertools
import json
from functools import cache

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from candlecast.data.importers import read_history
from candlecast.monitoring.replay import History, history_of, parse_period, replay
from candlecast.monitoring.replay_report import report
from tests.helpers import BTC_FILE, btc_pair

DAY = 86_400_000
#: A calm fortnight of the bundled history (found by replaying the triggers policy there).
CALM = ("2019-02-12", "2019-02-26")
#: Where the planted regime change starts: returns four times as large from then on.
PLANT = "2019-02-19"

PAIR = btc_pair(training={"train_days": 30, "kinds": ["lightgbm"]})


def _ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


@cache
def _candles() -> pd.DataFrame:
    return read_history(BTC_FILE)


@cache
def _history(planted: bool = False) -> History:
    candles = _candles()
    if planted:
        candles = _amplified(candles, _ms(PLANT), 4.0)
    return history_of(candles, "1h", PAIR.stream.market_key)


def _amplified(candles: pd.DataFrame, since: int, factor: float) -> pd.DataFrame:
    """A copy whose log prices move ``factor`` times as much from ``since`` on (open, high
    and low keep their log distance to the close, scaled the same)."""
    out = candles.copy()
    later = out["ts"] >= since
    base = np.log(out.loc[~later, "close"].iloc[-1])
    log_close = np.log(out.loc[later, "close"])
    new_close = base + factor * (log_close - base)
    for column in ("open", "high", "low"):
        offset = np.log(out.loc[later, column]) - log_close
        out.loc[later, column] = np.exp(new_close + factor * offset)
    out.loc[later, "close"] = np.exp(new_close)
    return out


def _span(start: str, end: str) -> tuple[int, int]:
    return _ms(start), _ms(end)


@pytest.mark.slow
def test_triggers_stay_quiet_in_a_calm_period() -> None:
    found = replay(
        _history(), PAIR, ["lightgbm"], _span(*CALM), policies=["triggers"], cadence_ms=60 * DAY
    )
    steps = found.runs["triggers"].steps
    assert [step.reason for step in steps] == ["start of the replay"]
    assert found.runs["triggers"].retrains == 0


@pytest.mark.slow
def test_triggers_fire_after_a_planted_regime_change() -> None:
    found = replay(
        _history(planted=True),
        PAIR,
        ["lightgbm"],
        _span(*CALM),
        policies=["cadence", "triggers"],
        cadence_ms=60 * DAY,
    )
    fired = [step for step in found.runs["triggers"].steps if step.triggered]
    assert fired, "no trigger fired after returns became four times as large"
    assert all(step.time > _ms(PLANT) for step in fired)
    assert any("coverage collapse" in s.reason or "drift" in s.reason for s in fired)
    # rate limited in data time: no two trigger retrains within the cooldown
    cooldown = PAIR.monitoring.retrain_cooldown_hours * 3_600_000
    assert all(b.time - a.time >= cooldown for a, b in itertools.pairwise(fired))
    assert found.runs["cadence"].retrains == 0


@pytest.mark.slow
def test_every_forecast_comes_from_a_champion_trained_before_its_candle() -> None:
    found = replay(_history(), PAIR, ["lightgbm"], _span(*CALM), cadence_ms=2 * DAY)
    close = found.history.close_ms[found.rows]
    for run in found.runs.values():
        since = np.array([run.champions[i].since for i in run.champion])
        trained_to = np.array([run.champions[i].window[1] for i in run.champion])
        last_event = np.array([run.champions[i].last_event for i in run.champion])
        assert (since <= close).all()
        assert (trained_to <= close).all()
        assert (last_event + found.history.step_ms <= since).all()  # its targets were known


@pytest.mark.slow
def test_forecasts_before_a_time_do_not_depend_on_later_candles() -> None:
    cut = _ms("2019-02-20")
    candles = _candles()
    short = history_of(candles[candles["ts"] < cut], "1h", PAIR.stream.market_key)
    span = _span(*CALM)
    full = replay(_history(), PAIR, ["lightgbm"], span, policies=["cadence"], cadence_ms=DAY)
    early = replay(short, PAIR, ["lightgbm"], (span[0], cut), policies=["cadence"], cadence_ms=DAY)
    before = full.history.close_ms[full.rows] + full.history.step_ms <= cut
    assert before.sum() == len(early.rows)
    np.testing.assert_allclose(
        full.runs["cadence"].predicted[before], early.runs["cadence"].predicted
    )


@pytest.mark.slow
def test_report_has_the_promised_shape() -> None:
    found = replay(_history(), PAIR, ["lightgbm"], _span(*CALM), cadence_ms=7 * DAY)
    payload = json.loads(json.dumps(report(found, PAIR.stream.key)))
    assert set(payload["policies"]) == {"never", "cadence", "triggers"}
    for figures in payload["policies"].values():
        assert set(figures) >= {"realized", "retrains", "champions", "compute_s"}
        assert set(figures["realized"]) >= {
            "forecasts",
            "rmse_ratio",
            "mae_ratio",
            "directional_accuracy",
            "majority_rate",
            "coverage",
        }
        assert figures["realized"]["forecasts"] == payload["forecasts"] == len(found.rows)
    assert payload["policies"]["never"]["retrains"] == 0
    assert payload["policies"]["cadence"]["retrains"] == 1
    first = payload["timeline"][0]
    assert set(first) >= {"time", "policy", "reason", "outcome", "champion_kind"}
    comparison = payload["comparison"]["triggers_vs_cadence"]
    assert 0 <= comparison["p_value"] <= 1
    assert isinstance(payload["comparison"]["verdict"], str)


@pytest.mark.parametrize(
    ("text", "ms"), [("@daily", DAY), ("7d", 7 * DAY), ("12h", DAY // 2), ("@weekly", 7 * DAY)]
)
def test_periods(text: str, ms: int) -> None:
    assert parse_period(text) == ms


@pytest.mark.parametrize("text", ["0 0 * * *", "d", "0d", "-1h", "7x"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a period"):
        parse_period(text)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        replay(_history(), PAIR, ["lightgbm"], _span(*CALM), policies=["sometimes"])


@pytest.mark.slow
def test_cli_replay_json_and_html(tmp_path) -> None:
    from candlecast.cli.main import app

    page = tmp_path / "replay.html"
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--pair", "BTC/USD",
            "--file", str(BTC_FILE),
            "--start", "2019-02-12",
            "--end", "2019-02-19",
            "--kinds", "lightgbm",
            "--cadence", "3d",
            "--policy", "never",
            "--policy", "cadence",
            "--json",
            "--html", str(page),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(payload["policies"]) == {"never", "cadence"}
    assert payload["policies"]["cadence"]["retrains"] == 2
    assert "cadence_vs_never" in payload["comparison"]
    text = page.read_text()
    assert "<svg" in text and "http://cdn" not in text and "<script src" not in text


@pytest.mark.slow
def test_cli_replay_prints_a_table_and_the_verdict() -> None:
    from candlecast.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--pair", "BTC/USD",
            "--file", str(BTC_FILE),
            "--start", "2019-02-12",
            "--end", "2019-02-15",
            "--kinds", "lightgbm",
            "--policy", "never",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "never" in result.output
    assert "triggers were not compared" in result.output


def test_cli_replay_refuses_a_cron_cadence() -> None:
    from candlecast.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--pair", "BTC/USD",
            "--file", str(BTC_FILE),
            "--start", "2019-02-12",
            "--end", "2019-02-15",
            "--cadence", "0 0 * * *",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--cadence" in result.output
