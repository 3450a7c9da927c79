"""``candlecast drift`` and ``candlecast monitor`` from the command line, on real data."""

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from candlecast.cli.main import app
from candlecast.cli.monitor import parse_span
from tests.helpers import BTC_FILE

runner = CliRunner()


def drift_json(reference: str, current: str) -> dict:
    args = ["drift", "--pair", "BTC/USD", "-e", "file", "--file", str(BTC_FILE), "--json"]
    result = runner.invoke(app, [*args, "--reference", reference, "--current", current])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_drift_of_a_file_between_calm_and_crash_windows():
    calm = drift_json("2019-02-20:2019-03-12T20:00", "2019-03-12T20:00:2019-04-02T16:00")
    assert calm["drift_detected"] is False and calm["stream"] == "file_btc_usd_1h"
    assert calm["reference_rows"] == calm["current_rows"] == 500
    assert set(calm["features"]) >= {"ret_1", "atr_14", "hour_sin"}  # the default set
    crash = drift_json("2019-02-20:2019-03-12T20:00", "2020-03-01:2020-03-21T20:00")
    assert crash["drift_detected"] is True and crash["drift_share"] >= 0.6
    assert crash["features"]["volatility_24"]["drifted"] is True
    assert crash["features"]["volatility_24"]["method"] == "wasserstein"


def test_stdout_is_only_the_json_from_a_real_process():
    command = [str(Path(sys.executable).parent / "candlecast"), "drift", "--pair", "BTC/USD"]
    done = subprocess.run(
        [
            *command,
            *("-e", "file", "-t", "1h", "--file", str(BTC_FILE), "--json"),
            *("--reference", "2018-10-15:2018-11-04", "--current", "2021-05-05:2021-05-26"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["drift_detected"] is True


def test_an_empty_window_is_one_line_and_exit_1():
    args = ["drift", "--pair", "BTC/USD", "-e", "file", "--file", str(BTC_FILE)]
    result = runner.invoke(
        app, [*args, "--reference", "2010-01-01:2010-02-01", "--current", "2020-03-01:2020-03-22"]
    )
    assert result.exit_code == 1 and "no feature rows in the reference window" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-03-01:2020-03-22", (datetime(2020, 3, 1), datetime(2020, 3, 22))),
        (
            "2020-03-01T06:00:2020-03-22T18:30",
            (datetime(2020, 3, 1, 6), datetime(2020, 3, 22, 18, 30)),
        ),
        ("2020-03-01T06:00:00Z:2020-03-02", (datetime(2020, 3, 1, 6), datetime(2020, 3, 2))),
        ("2020-03-01..2020-03-22", (datetime(2020, 3, 1), datetime(2020, 3, 22))),
    ],
)
def test_parse_span(text, expected):
    assert parse_span(text) == tuple(t.replace(tzinfo=UTC) for t in expected)


@pytest.mark.parametrize("text", ["2020-03-01", "2020-03-22:2020-03-01", "x:2020-01-01"])
def test_parse_span_refuses(text):
    with pytest.raises(typer.BadParameter):
        parse_span(text)


def test_monitor_prints_the_figures_of_a_stored_stream(tmp_path, monkeypatch):
    from candlecast.config import load_pairs
    from candlecast.data import ingestion
    from candlecast.monitoring.store import MetricsStore

    (tmp_path / "pairs.yaml").write_text(
        f"pairs:\n  - {{symbol: BTC/USD, exchange: drill, replay_file: {BTC_FILE}, timeframe: 1h,"
        " monitoring: {window_candles: 300}}\n"
    )
    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANDLECAST_PAIRS", str(tmp_path / "pairs.yaml"))
    (pair,) = load_pairs().pairs
    start, end = datetime(2019, 1, 20, tzinfo=UTC), datetime(2019, 3, 1, tzinfo=UTC)
    ingestion.ingest(pair, start, end, with_history=False)
    ingestion.validate(pair, start, end)

    result = runner.invoke(app, ["monitor", "--pair", "drill_btc_usd_1h", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["as_of"] == "2019-03-01T00:00:00+00:00"  # the newest candle's close
    assert found["champion_version"] is None  # nothing trained: the window before as reference
    assert found["reference_rows"] == found["current_rows"] == 300
    assert found["retrain"] == found["drift_detected"]
    (stored,) = MetricsStore().checks("drill_btc_usd_1h")
    assert stored.drift_share == pytest.approx(found["drift_share"])
    assert stored.feature_staleness_s > 0
