"""One ``candlecast run`` of a stream at a time: a second one stops at once, naming the first
(two at once both trained and moved the champion twice within a second); the lock dies with
its holder, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from candlecast.cli.app import app
from candlecast.config import load_pairs
from candlecast.errors import StreamBusyError
from candlecast.orchestration.runlock import stream_run
from candlecast.settings import Settings
from tests.helpers import BTC_FILE, REPO

HOLD = """
import sys
from candlecast.config import load_pairs
from candlecast.orchestration.runlock import stream_run
from pathlib import Path

with stream_run(load_pairs(Path(sys.argv[1])).pairs[0].stream):
    print("holding", flush=True)
    sys.stdin.read()  # until killed
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(
        "pairs:\n"
        f"  - {{symbol: BTC/USD, exchange: replay, replay_file: {BTC_FILE}, timeframe: 1h,\n"
        "     start: 2021-06-01, training: {train_days: 20}}\n"
    )
    values = {"CANDLECAST_HOME": str(tmp_path / "home"), "CANDLECAST_PAIRS": str(pairs)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_a_second_run_of_a_running_stream_stops_naming_the_first(env):
    stream = load_pairs().pairs[0].stream
    with stream_run(stream):  # the first run, in this process
        result = CliRunner().invoke(app, ["run", "--pair", "BTC/USD"], env=env)
    out = " ".join(result.output.split())
    assert result.exit_code == 1, out
    assert f"another run of this stream is running (pid {os.getpid()}, started" in out
    assert not (Settings().paths.raw).exists()  # it did nothing
    with stream_run(stream):  # and the lock is free once the first is done
        pass


def test_a_killed_run_leaves_the_stream_free(env):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, env["CANDLECAST_PAIRS"]],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        stream = load_pairs().pairs[0].stream
        with pytest.raises(StreamBusyError, match=f"pid {holder.pid}"), stream_run(stream):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with stream_run(stream):
        pass
