"""Degrade, don't stall: the forecast log on a full disk or an unwritable directory, and the
bounds of an online store read (the live service under these faults: test_fail_safe_live.py).
"""

import logging

from prometheus_client import REGISTRY

from candlecast.features.online import bounded_redis_url
from candlecast.serving.announcements import Announcements
from candlecast.serving.forecast_log import ForecastLog, read_forecasts
from tests.monitoring.test_forecast_log import HOUR, STREAM, answer
from tests.serving.faults import clear_log, fill_log

CAP = 256 * 1024


def failures(outcome: str) -> float:
    labels = {"store": "forecast_log", "outcome": outcome}
    return REGISTRY.get_sample_value("candlecast_store_failures_total", labels) or 0.0


def test_a_full_log_keeps_the_forecasts_counts_and_logs_once_and_recovers(tmp_path, caplog):
    path = tmp_path / "log.db"
    fill_log(path, CAP)  # another writer took the space (SQLite: "database or disk is full")
    log = ForecastLog(path, flush_interval=3600, max_bytes=CAP)
    before = failures("disk_full")
    with caplog.at_level(logging.INFO, logger="candlecast.serving.forecast_log"):
        for tick in range(3):
            for i in range(500):
                log.record(answer(HOUR * (1000 + 500 * tick + i), 0.001))  # never blocks
            assert log.flush() == 0
        problem = log.problem()
        assert problem is not None and "database or disk is full" in problem, problem
        assert "1500 forecasts waiting, 0 dropped" in problem
        assert failures("disk_full") == before + 3  # counted per failed write
        clear_log(path)  # space again
        assert log.flush() == 1500 and log.problem() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "forecasts wait in memory" in line]) == 1, lines
    assert any("writing again after" in line for line in lines), lines
    log.close()
    assert len(read_forecasts(STREAM, path=path)) == 1500


def test_an_unwritable_log_drops_beyond_its_bound_and_says_so(tmp_path):
    path = tmp_path / "log.db"
    path.mkdir()  # where the file should be: "unable to open database file", even for root
    log = ForecastLog(path, flush_interval=3600, max_pending=100)
    before = failures("unwritable")
    for i in range(150):
        log.record(answer(HOUR * (1000 + i), 0.001))
    assert log.flush() == 0 and failures("unwritable") == before + 1
    assert log.dropped == 50 and "100 forecasts waiting, 50 dropped" in (log.problem() or "")
    log.path = tmp_path / "elsewhere.db"
    assert log.flush() == 100 and log.problem() is None
    log.close()


def test_redis_reads_are_bounded_unless_the_url_says_otherwise():
    url = bounded_redis_url("redis:6379,db=3", 1.5)
    assert url == ("redis:6379,db=3,socket_connect_timeout=1.5,socket_timeout=1.5,retry=null")
    own = bounded_redis_url("redis:6379,socket_timeout=10", 1.5)
    assert own == "redis:6379,socket_timeout=10,socket_connect_timeout=1.5,retry=null"


def test_announcements_that_cannot_be_written_are_counted_said_and_logged_once(tmp_path, caplog):
    home = tmp_path / "home"
    home.mkdir()
    (home / "serving").write_text("a file where the directory should be")  # mkdir fails
    news = Announcements(home)
    labels = {"store": "announcements", "outcome": "error"}
    before = REGISTRY.get_sample_value("candlecast_store_failures_total", labels) or 0.0
    with caplog.at_level(logging.WARNING, logger="candlecast.serving.announcements"):
        assert news.record("eth") is None and news.record("eth") is None
        assert "announcements not shared" in (news.problem() or "")
        assert REGISTRY.get_sample_value("candlecast_store_failures_total", labels) == before + 2
        assert len(caplog.records) == 1  # where it starts, not per announcement
        (home / "serving").unlink()  # the directory can be made again
        assert news.record("eth") == 1 and news.problem() is None
        assert news.counts() == {"eth": 1}
        assert len(caplog.records) == 2 and "written again" in caplog.records[-1].getMessage()
