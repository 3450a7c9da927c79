"""``candlecast serve`` replaces what a killed service left on its port (issue 20 #7).

A ``bentoml serve`` killed with -9 leaves its circus arbiter and workers holding the port. The
stand-ins here are real processes with that shape: a listener whose command line is BentoML's
serving ``service:Candlecast``, with a worker child; and an unrelated listener, which is left
alone.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psutil

from candlecast.cli.embedded import replace_orphans

LISTEN = """
import socket, subprocess, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
if "circus" in sys.argv:  # the arbiter's worker, holding the socket too
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "_bentoml_impl.worker"])
print("up", flush=True)
time.sleep(600)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listener(port: int, *marks: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTEN, str(port), *marks], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def test_an_orphaned_service_on_the_port_is_stopped_with_its_workers():
    port = free_port()
    orphan = listener(port, "circus", "bentoml", "serve", "service:Candlecast")
    worker = psutil.Process(orphan.pid).children()[0]
    try:
        stopped = replace_orphans(port)
        assert stopped == sorted([orphan.pid, worker.pid])
        assert orphan.wait(timeout=30) is not None
        deadline = time.monotonic() + 30  # no timing assumed: a generous bound on a reap
        while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the worker was not stopped"
            time.sleep(0.1)
        with socket.socket() as again:  # the port is free for the new service
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
    finally:
        for proc in (orphan,):
            proc.kill()


def test_another_programs_listener_is_left_alone():
    port = free_port()
    other = listener(port, "some", "other", "server")
    try:
        assert replace_orphans(port) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
