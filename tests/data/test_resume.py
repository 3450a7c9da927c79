"""Ingestion killed with SIGKILL mid-range resumes from the last stored candle, and an
exchange that answers with empty pages mid-range fails the run naming where it stopped.

The killed ingestion is a real process running the real ccxt client against the local
exchange server. It is killed while the server holds its third page request (a stall the
client waits out with a long timeout): by then it has stored exactly two pages, however slow
the machine, because a page is requested only after the one before it is stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pandas as pd
import pytest

from candlecast.data import ingestion
from candlecast.data.exchanges import CcxtSource, RetryPolicy
from candlecast.data.importers import read_history
from candlecast.errors import ExchangeUnavailableError
from candlecast.testing.exchange_server import ExchangeServer
from tests.data.test_live_exchange import eventually, expected, klines_starts
from tests.helpers import BTC_FILE, REPO, btc_pair, settings_in

BTC = "BTC/USDT"
HOUR = 3_600_000
START = int(datetime(2021, 6, 1, tzinfo=UTC).timestamp() * 1000)
PAGE = 1000 * HOUR
END = START + 5 * PAGE  # five binance pages
PAIR = btc_pair(symbol=BTC, exchange="binance", replay_file=None)
AT = [datetime.fromtimestamp(ms / 1000, UTC) for ms in (START, END)]

#: The ingestion the test kills: ``candlecast.data.ingestion.ingest`` with the binance source
#: pointed at the local server; the client would wait ten minutes for a reply.
SCRIPT = """
import sys
from datetime import UTC, datetime
from candlecast.data import ingestion
from candlecast.data.exchanges import CcxtSource, RetryPolicy
from tests.helpers import btc_pair

url, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pair = btc_pair(symbol="BTC/USDT", exchange="binance", replay_file=None)
source = CcxtSource("binance", base_url=url, timeout_ms=600_000, retry=RetryPolicy(tries=1))
at = [datetime.fromtimestamp(ms / 1000, UTC) for ms in (start, end)]
ingestion.ingest(pair, at[0], at[1], source=source)
"""


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return read_history(BTC_FILE)


@pytest.fixture
def server(candles):
    with ExchangeServer({BTC: candles}, now_ms=int(candles["ts"].max()) + HOUR // 2) as running:
        yield running


def source_for(server: ExchangeServer, sleeps: list[float], tries: int = 3) -> CcxtSource:
    policy = RetryPolicy(tries=tries, backoff_s=0.01)
    return CcxtSource(
        "binance", base_url=server.url, timeout_ms=60_000, retry=policy, clock=server.clock_ms,
        sleep=sleeps.append,
    )  # fmt: skip


def test_a_rerun_after_kill_9_resumes_from_the_last_stored_candle(tmp_path, server, candles):
    settings = settings_in(tmp_path)
    server.inject("timeout", times=None, after=2)  # the third page request is held
    env = os.environ | {"CANDLECAST_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", SCRIPT, server.url, str(START), str(END)]
    child = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE)
    try:
        eventually(lambda: server.count() >= 3 or child.poll() is not None, within_s=300)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    stored = lambda: ingestion.raw_table(PAIR.stream, settings).read()  # noqa: E731
    pd.testing.assert_frame_equal(stored(), expected(candles, START, START + 2 * PAGE))

    server.clear_faults()
    asked = len(klines_starts(server))
    result = ingestion.ingest(PAIR, *AT, source=source_for(server, []), settings=settings)

    # The re-run asks only for the three pages the killed run had not stored.
    rerun = klines_starts(server)[asked:]
    assert rerun == [START + 2 * PAGE, START + 3 * PAGE, START + 4 * PAGE]
    assert result.resumed_ms == START + 2 * PAGE and result.rows == 3000
    pd.testing.assert_frame_equal(stored(), expected(candles, START, END), check_exact=True)


def test_empty_pages_mid_range_spend_the_retries_then_fail_naming_the_timestamp(
    tmp_path, server, candles
):
    settings = settings_in(tmp_path)
    server.inject("short", times=None, after=1, keep=0)  # every page after the first: empty
    sleeps: list[float] = []
    source = source_for(server, sleeps, tries=4)

    with pytest.raises(ExchangeUnavailableError) as failure:
        ingestion.ingest(PAIR, *AT, source=source, settings=settings)

    message = str(failure.value)
    second = START + PAGE
    assert "since 2021-07-12T16:00:00+00:00" in message and f"since={second}" in message
    assert "after 4 tries" in message and "returned 0 BTC/USDT 1h candles" in message
    assert klines_starts(server).count(second) == 4 and len(sleeps) == 3  # the whole budget
    stored = ingestion.raw_table(PAIR.stream, settings).read()
    pd.testing.assert_frame_equal(stored, expected(candles, START, second), check_exact=True)

    # The exchange has the candles again: the next run resumes where this one stopped.
    server.clear_faults()
    asked = len(klines_starts(server))
    ingestion.ingest(PAIR, *AT, source=source, settings=settings)
    assert klines_starts(server)[asked] == second
    pd.testing.assert_frame_equal(
        ingestion.raw_table(PAIR.stream, settings).read(),
        expected(candles, START, END),
        check_exact=True,
    )


def test_an_empty_page_where_the_range_reaches_the_present_ends_it(tmp_path, server, candles):
    settings = settings_in(tmp_path)
    last = int(candles["ts"].max())  # open at the server's clock: never served
    start = datetime.fromtimestamp((last - 10 * HOUR) / 1000, UTC)
    until = datetime.fromtimestamp((last + 5 * HOUR) / 1000, UTC)

    result = ingestion.ingest(PAIR, start, until, source=source_for(server, []), settings=settings)

    assert result.rows == 10
    assert ingestion.raw_table(PAIR.stream, settings).last_key() == last - HOUR
