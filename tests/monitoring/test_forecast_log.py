"""The forecast log (serving/forecast_log.py) and realized skill from it on real candles."""

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from candlecast.evaluation.metrics import (
    directional_accuracy,
    interval_coverage,
    mae,
    persistence_ratios,
    rmse,
)
from candlecast.modeling.evaluate import evaluation_frame
from candlecast.monitoring.performance import join_realized, realized_performance, realized_returns
from candlecast.serving.forecast_log import (
    FLUSH_INTERVAL_S,
    ForecastLog,
    next_wait,
    read_forecasts,
)
from candlecast.timeframes import ms_to_iso

STREAM = "replay_btc_usd_1h"
HOUR = 3_600_000


def answer(feature_ts: int, predicted: float, version: str = "3", half: float | None = 0.01):
    """A /predict answer as candlecast.serving.snapshot.answer shapes it."""
    body = {
        "stream": STREAM,
        "predicted_return": predicted,
        "feature_timestamp": ms_to_iso(feature_ts),
        "forecast_for": ms_to_iso(feature_ts + HOUR),
        "model": {"name": f"{STREAM}_forecaster", "version": version},
    }
    if half is not None:
        body["interval"] = {"return": [predicted - half, predicted + half]}
    return body


@pytest.fixture(scope="module")
def window(btc_candles):
    """January and February 2022 of the bundled candles: features and next-candle targets."""
    start = int(datetime(2021, 12, 1, tzinfo=UTC).timestamp() * 1000)
    candles = btc_candles[btc_candles["ts"] >= start].reset_index(drop=True)
    rows = evaluation_frame(candles, "1h", "replay:BTC/USD")
    rows = rows[rows["event_timestamp"] >= pd.Timestamp("2022-01-01", tz="UTC")]
    return candles, rows.reset_index(drop=True)


def test_logged_forecasts_joined_with_realized_returns_score_as_computed_directly(tmp_path, window):
    candles, rows = window
    # a real (if weak) forecaster: a little mean reversion of the last return
    predicted = -0.05 * rows["ret_1"].to_numpy(dtype=np.float64)
    feature_ts = rows["candle_ts"].to_numpy() + HOUR  # the close of the row's candle
    log = ForecastLog(tmp_path / "log.db", flush_interval=3600)  # flushed by hand below
    for ts, value in zip(feature_ts, predicted, strict=True):
        log.record(answer(int(ts), float(value)))
        log.record(answer(int(ts), float(value)))  # served twice: counted once
    log.record(answer(int(feature_ts[0]), 0.5, version="2"))  # another version's forecast
    log.close()
    assert log.written == 2 * len(rows) + 1 and log.dropped == 0

    logged = read_forecasts(STREAM, path=tmp_path / "log.db")
    assert len(logged) == 2 * len(rows) + 1
    mine = logged[logged["model_version"] == "3"]
    joined = join_realized(mine, realized_returns(candles, "1h"))
    found = realized_performance(joined)
    assert found is not None and found.forecasts == len(rows)

    target = rows["target"].to_numpy(dtype=np.float64)
    ratios = persistence_ratios(target, predicted)
    assert found.mae == pytest.approx(mae(target, predicted), rel=1e-12)
    assert found.rmse == pytest.approx(rmse(target, predicted), rel=1e-12)
    assert found.rmse_ratio == pytest.approx(ratios.rmse, rel=1e-12)
    assert found.mae_ratio == pytest.approx(ratios.mae, rel=1e-12)
    direction = directional_accuracy(target, predicted)
    assert found.directional_accuracy == pytest.approx(direction.accuracy)
    assert found.majority_rate == pytest.approx(direction.majority_rate)
    coverage = interval_coverage(target, predicted - 0.01, predicted + 0.01)
    assert found.coverage == pytest.approx(coverage.rate)
    assert 0 < found.coverage < 1


def test_a_forecast_whose_candle_has_not_closed_is_not_scored(tmp_path, window):
    candles, _ = window
    last_close = int(candles["ts"].iloc[-1]) + HOUR
    log = ForecastLog(tmp_path / "log.db", flush_interval=3600)
    log.record(answer(last_close - HOUR, 0.001))  # its target candle is the last one: closed
    log.record(answer(last_close, 0.001))  # for the candle after the data: not yet realized
    log.close()
    joined = join_realized(
        read_forecasts(STREAM, path=tmp_path / "log.db"), realized_returns(candles, "1h")
    )
    assert joined["feature_ts"].tolist() == [last_close - HOUR]


def test_answers_without_interval_and_reading_a_missing_log(tmp_path):
    assert read_forecasts(STREAM, path=tmp_path / "none.db").empty
    log = ForecastLog(tmp_path / "log.db", flush_interval=3600)
    log.record(answer(HOUR * 1000, 0.0, half=None))
    log.close()
    row = read_forecasts(STREAM, path=tmp_path / "log.db").iloc[0]
    assert np.isnan(row["lower"]) and row["predicted"] == 0.0 and row["target_ts"] == HOUR * 1001


#: The log's table and platform indexes as candlecast wrote them before ``target_key`` existed.
OLD_SCHEMA = """
CREATE TABLE forecasts (
    stream TEXT NOT NULL, model_version TEXT NOT NULL, feature_ts INTEGER NOT NULL,
    target_ts INTEGER NOT NULL, predicted REAL NOT NULL, lower REAL, upper REAL,
    served_at INTEGER NOT NULL, source TEXT NOT NULL DEFAULT 'service'
);
CREATE INDEX forecasts_stream_time ON forecasts (stream, feature_ts);
CREATE UNIQUE INDEX forecasts_platform_once
ON forecasts (stream, model_version, feature_ts) WHERE source = 'platform';
CREATE UNIQUE INDEX forecasts_shadow_once
ON forecasts (stream, model_version, feature_ts) WHERE source = 'shadow';
"""


def test_a_log_from_before_targets_reads_as_the_main_target_and_takes_other_targets(tmp_path):
    from candlecast.serving.forecast_log import PLATFORM, write_platform
    from candlecast.settings import Settings

    settings = Settings(home=tmp_path)
    path = tmp_path / "forecasts" / "forecast_log.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO forecasts VALUES (?, '3', ?, ?, 0.001, NULL, NULL, 1, 'platform')",
            (STREAM, HOUR * 1000, HOUR * 1001),
        )
    old = read_forecasts(STREAM, settings=settings)
    assert old["target_key"].tolist() == ["return_h1"] and old["source"].tolist() == [PLATFORM]
    # the same version number and candle for another target is a row of its own ...
    other = pd.DataFrame(
        {"stream": [STREAM], "model_version": ["3"], "feature_ts": [HOUR * 1000],
         "target_ts": [HOUR * 1024], "predicted": [2e-4], "lower": [np.nan],
         "upper": [np.nan], "served_at": [2], "target_key": ["volatility_h24"]}
    )  # fmt: skip
    assert write_platform(other, settings) == 1
    assert write_platform(other, settings) == 0  # ... logged once
    assert write_platform(other.assign(target_key="return_h1"), settings) == 0  # the old row
    assert read_forecasts(STREAM, settings=settings)["predicted"].tolist() == [0.001]
    (row,) = read_forecasts(STREAM, settings=settings, target_key="volatility_h24").itertuples()
    assert (row.model_version, row.target_ts, row.source) == ("3", HOUR * 1024, PLATFORM)
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert not names & {"forecasts_platform_once", "forecasts_shadow_once"}


def test_record_never_raises_or_writes_and_keeps_rows_a_failed_write_missed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = ForecastLog(blocker / "log.db", flush_interval=3600)
    log.record(answer(HOUR * 1000, 0.001))  # queued only: no I/O on the request path
    assert log.flush() == 0  # the write failed (logged) ...
    log.path = tmp_path / "log.db"
    assert log.flush() == 1  # ... and the row was kept for the next one
    log.close()
    assert len(read_forecasts(STREAM, path=tmp_path / "log.db")) == 1


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path):
    log = ForecastLog(tmp_path / "log.db", flush_interval=3600, max_pending=10)
    for i in range(25):
        log.record(answer(HOUR * (1000 + i), 0.001))
    assert log.dropped == 15
    log.close()
    assert log.written == 10


def test_the_background_thread_flushes(tmp_path):
    log = ForecastLog(tmp_path / "log.db", flush_interval=0.05)
    log.record(answer(HOUR * 1000, 0.001))
    log._stop.set()  # let the thread finish its last tick; no sleeping on a clock
    log._thread.join(timeout=120)
    log.flush()
    assert log.written == 1


def test_several_processes_append_to_one_log(tmp_path):
    path = tmp_path / "log.db"
    script = (
        "import sys; from candlecast.serving.forecast_log import ForecastLog;"
        "from tests.monitoring.test_forecast_log import answer;"
        "log = ForecastLog(__import__('pathlib').Path(sys.argv[1]), flush_interval=0.01);"
        "[log.record(answer(3_600_000 * (1000 + i + 10_000 * int(sys.argv[2])), 0.001))"
        " for i in range(500)];"
        "log.close(); assert log.written == 500"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)]) for n in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(read_forecasts(STREAM, path=path)) == 1500


@pytest.mark.parametrize(
    ("started", "now", "expected"),
    [
        (10.0, 10.0, 0.25),  # a flush that took no time waits a whole interval
        (10.0, 10.2, 0.05),  # a slow write shortens the wait: the cadence is kept
        (10.0, 10.25, 0.0),
        (10.0, 11.5, 0.0),  # a write slower than the interval: the next starts at once
    ],
)
def test_flushes_keep_their_cadence_whatever_a_write_takes(started, now, expected):
    assert next_wait(started, now, FLUSH_INTERVAL_S) == pytest.approx(expected)
    assert FLUSH_INTERVAL_S <= 0.5  # a crash loses at most one interval plus one write


def test_the_writer_opens_its_connection_once_not_per_flush(tmp_path, monkeypatch):
    """Opening the log (its schema checked, the WAL set up and, on closing the last
    connection, checkpointed and deleted) once per tick made each flush slow under load."""
    path = tmp_path / "log.db"
    opened = []
    connect = sqlite3.connect

    def counting(database, *args, **kwargs):
        opened.append(database)
        return connect(database, *args, **kwargs)

    log = ForecastLog(path, flush_interval=3600)
    monkeypatch.setattr(sqlite3, "connect", counting)
    for tick in range(3):
        log.record(answer(HOUR * (1000 + tick), 0.001))
        assert log.flush() == 1
    log.close()
    assert opened == [path]
    assert len(read_forecasts(STREAM, path=path)) == 3


def test_a_kill_9_after_a_flush_loses_none_of_its_forecasts(tmp_path):
    """The writer commits without an fsync (synchronous=NORMAL in WAL mode): what a flush
    committed survives the process being killed (not a power loss)."""
    path = tmp_path / "log.db"
    script = (
        "import os, signal, sys; from candlecast.serving.forecast_log import ForecastLog;"
        "from tests.monitoring.test_forecast_log import answer;"
        "log = ForecastLog(__import__('pathlib').Path(sys.argv[1]), flush_interval=3600);"
        "[log.record(answer(3_600_000 * (1000 + i), 0.001)) for i in range(100)];"
        "assert log.flush() == 100; os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], timeout=300, check=False)
    assert proc.returncode == -9
    assert len(read_forecasts(STREAM, path=path)) == 100


def test_a_flush_writes_its_rows_with_one_statement_not_one_per_row(tmp_path, monkeypatch):
    """Each statement step lets go of the GIL, and the writer waited to take it back once per
    row while the request handlers were busy (bench/bench_faults.py, 8 clients)."""
    traced: list[str] = []
    connect = sqlite3.connect

    def tracing(database, *args, **kwargs):
        db = connect(database, *args, **kwargs)
        db.set_trace_callback(traced.append)
        return db

    monkeypatch.setattr(sqlite3, "connect", tracing)
    log = ForecastLog(tmp_path / "log.db", flush_interval=3600)
    for i in range(300):
        log.record(answer(HOUR * (1000 + i), 0.001))
    assert log.flush() == 300
    log.close()
    inserts = [sql for sql in traced if sql.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1, len(inserts)
    assert len(read_forecasts(STREAM, path=tmp_path / "log.db")) == 300
