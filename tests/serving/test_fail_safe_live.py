"""Degrade, don't stall, on a real ``bentoml serve``: the online store is the real Redis behind
a proxy that hangs (answers nothing) or goes down (refuses), and the forecast log is filled to
the service's cap by another writer (SQLite's "database or disk is full"). Through each fault
``/predict`` answers from memory, marked stale with the reason, and ``/health`` and
``/readyz`` say what is degraded; once the fault clears the answers are fresh again. A refresh
that finds nothing (the model store moved away, Redis emptied) keeps the working snapshot and
``/readyz`` follows what ``/predict`` answers; a killed ``candlecast serve`` is replaced and a
tampered model file refused (issue 20's defects 1, 4, 5, 6 and 7).

Only outcomes are asserted: a request either answers (within a client timeout minutes long,
which the old service blew through by waiting forever on a hung Redis) or it does not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import redis

from candlecast.cli import embedded
from candlecast.testing.faultproxy import FaultProxy
from tests.serving import faults, world
from tests.serving.test_live_service import call
from tests.serving.test_service import free_port

pytestmark = pytest.mark.slow

#: Redis database of this test (the integration tests use 13 to 15).
REDIS_DB = 12
ETH = {"pair": "ETH/BTC"}
DEADLINE_S = 300  # for a recovery that the service makes in seconds on an idle machine


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """The online store's Redis: a server of this module's own, stopped and started for real."""
    server = faults.RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server):
    root = tmp_path_factory.mktemp("faults")
    proxy = FaultProxy(redis_server.address)
    disk = None
    try:
        env = faults.redis_world(root, proxy, REDIS_DB, redis_server.address)
        env["CANDLECAST_API_KEYS"] = ""
        disk = forecasts_on_tmpfs(root / "home" / "forecasts")
        port = free_port()
        log = root / "bentoml.log"
        proc = embedded.start(embedded.bentoml_command("127.0.0.1", port), log, env)
        try:
            embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
            yield f"http://127.0.0.1:{port}", proxy, root, log, proc
        finally:
            embedded.stop([proc])
    finally:
        proxy.close()
        if disk is not None:
            subprocess.run(["umount", "-l", disk], check=True)


#: The forecast log's tmpfs: room for the capped log (LOG_CAP_MB) and as much again for its
#: write-ahead log, which grows while a reader holds a snapshot.
TMPFS_MB = 2 * faults.LOG_CAP_MB + 32


def forecasts_on_tmpfs(folder: Path) -> Path | None:
    """Put the world's forecast log on a tmpfs of its own (a disk that can be filled for real),
    its contents copied there, checkpointed first (no WAL: the service's starts from empty and
    grows with every write); None where mounting needs a root this process lacks."""
    if os.geteuid() != 0:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    aside = folder.with_name("forecasts.before-tmpfs")
    folder.rename(aside)
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", folder], check=True)
    for path in aside.iterdir():
        shutil.copy2(path, folder / path.name)
    return folder


def predict_many(base: str, count: int = 40, clients: int = 4) -> list[tuple[int, dict]]:
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: call(base, "/predict", ETH, key=None), range(count)))


def wait_until(check, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("mode", ["hang", "refuse", "stopped"])
def test_an_online_store_outage_never_stalls_predict(service, redis_server, mode):
    """Defect 1: Redis hung (answers nothing), refusing connections, or really stopped (and
    started again: empty, its data put back as a restart with persistence would)."""
    base, proxy, *_ = service
    status, healthy = call(base, "/predict", ETH, key=None)
    assert status == 200 and healthy.get("stale_reason") is None, healthy
    online = redis.Redis(*redis_server.address, db=REDIS_DB)
    saved = {key: online.dump(key) for key in online.scan_iter()}
    if mode == "stopped":
        redis_server.stop()
    else:
        proxy.set(mode)
    try:
        # what every deploy and materialize does: announce news, then clients keep asking
        status, refreshed = call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)
        assert status == 200 and "online store" in refreshed["refreshed"][0]["error"], refreshed
        answers = predict_many(base)
        assert {status for status, _ in answers} == {200}, answers[:3]
        for _, body in answers:
            assert body["stale"] is True and "online store unavailable" in body["stale_reason"]
            assert body["snapshot_age_seconds"] >= 0
            assert body["predicted_return"] == healthy["predicted_return"]
        status, ready = call(base, "/readyz", key=None)
        assert status == 200 and ready["ready"] is True and ready["online_store"] == "unavailable"
        status, health = call(base, "/health", key=None)
        assert health["status"] == "degraded" and "online store" in health["degraded"][0]
    finally:
        proxy.set("pass")
        if mode == "stopped":
            redis_server.start()
            restarted = redis.Redis(*redis_server.address, db=REDIS_DB)
            for key, payload in saved.items():
                restarted.restore(key, 0, payload, replace=True)

    def fresh():
        status, body = call(base, "/predict", ETH, key=None)
        return status == 200 and body.get("stale_reason") is None and body

    recovered = wait_until(fresh, "a fresh answer after the store came back")
    assert recovered["predicted_return"] == healthy["predicted_return"]
    status, refreshed = call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)
    assert "error" not in refreshed["refreshed"][0], refreshed
    assert call(base, "/health", key=None)[1]["status"] == "ok"


def test_a_full_disk_keeps_predict_answering_and_loses_no_forecast(service):
    """Defect 4 with the disk really full: the forecast log's tmpfs (the fixture) is filled by a
    file up to ENOSPC while clients ask."""
    folder = service[2] / "home" / "forecasts"
    if not os.path.ismount(folder):
        pytest.skip("mounting a tmpfs needs root")
    filler = folder / "filler"

    def fill() -> None:
        with filler.open("wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * (1024 * 1024))  # until ENOSPC: the disk is full
        assert shutil.disk_usage(folder).free < 1024 * 1024

    answers_through_a_full_log(service, fill, filler.unlink, "full")


def test_a_full_forecast_log_keeps_predict_answering_and_is_reported(service):
    """The forecast log at its size cap (filled by another writer): SQLite's "database or disk
    is full" for the service's writer, until the filler rows are deleted."""
    path = service[2] / "home" / "forecasts" / "forecast_log.db"
    answers_through_a_full_log(
        service, lambda: faults.fill_log(path), lambda: faults.clear_log(path), "disk is full"
    )


#: What the service logs when its forecast log stops being written.
WAITING = "forecasts wait in memory"


def answers_through_a_full_log(service, fill, clear, why: str) -> None:
    """While ``fill`` keeps the forecast log from being written (until ``clear``), every request
    is answered from memory; the failure (``why``) is on ``/health`` and ``/readyz``, counted
    in the metrics and logged once; once cleared, every forecast answered meanwhile is written."""
    base, _, root, log, _ = service
    path = root / "home" / "forecasts" / "forecast_log.db"
    start, logged = faults.service_rows(path), log.read_text().count(WAITING)
    assert call(base, "/predict", ETH, key=None)[0] == 200
    wait_until(lambda: faults.service_rows(path) > start, "the forecast log written")
    fill()
    before, answered = faults.service_rows(path), []
    try:

        def reported():
            answers = predict_many(base, count=8)
            assert {status for status, _ in answers} == {200}, answers[:3]
            answered.extend(answers)
            health = call(base, "/health", key=None)[1]
            return health["status"] == "degraded" and health

        health = wait_until(reported, "/health reporting the forecast log's failure")
        assert any("forecast log" in line and why in line for line in health["degraded"])
        status, ready = call(base, "/readyz", key=None)
        assert status == 200 and ready["ready"] is True and why in ready["forecast_log"]
        answers = predict_many(base)
        assert {status for status, _ in answers} == {200}
        answered.extend(answers)
        metrics = call(base, "/metrics", key=None)[1]
        assert any(
            line.startswith("candlecast_store_failures_total{")
            and 'store="forecast_log"' in line
            and 'outcome="disk_full"' in line
            and float(line.split()[-1]) > 0
            for line in metrics.splitlines()
        ), metrics[-3000:]
    finally:
        clear()  # space again
    wait_until(lambda: call(base, "/health", key=None)[1]["status"] == "ok", "logged again")
    assert faults.service_rows(path) >= before + len(answered)
    assert log.read_text().count(WAITING) == logged + 1  # once, not per request or tick


def test_the_process_manager_takes_orders_from_its_owner_only(service):
    """circus's control endpoint (list, stop, respawn the workers; no key asked) and its event
    stream are owner-only Unix sockets, not TCP ports anyone on the machine can reach."""
    base, *_, proc = service
    port = int(base.rsplit(":", 1)[1])
    arbiter = psutil.Process(proc.pid)
    listening = {
        conn.laddr.port
        for conn in arbiter.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert listening == {port}  # BentoML's own arbiter also listens on two more TCP ports
    bound = {conn.laddr for conn in arbiter.net_connections(kind="unix") if conn.laddr}
    control = next(path for path in bound if path.endswith("/control"))
    folder = Path(control).parent.stat()
    assert folder.st_uid == os.getuid() and stat.S_IMODE(folder.st_mode) == 0o700
    ctl = [sys.executable, "-m", "circus.circusctl", "--endpoint", f"ipc://{control}"]
    listed = subprocess.run([*ctl, "list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "service" in listed.stdout, listed  # the owner's
    outsider_python = shutil.which("python3", path="/usr/bin:/bin")  # one anybody may run
    if os.geteuid() == 0 and outsider_python:  # another user is refused at the directory
        tried = subprocess.run(
            [outsider_python, "-c", CONNECT, control],
            user="nobody",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tried.returncode != 0 and "PermissionError" in tried.stderr, tried
    with socket.create_connection(("127.0.0.1", port), timeout=30):
        pass
    assert call(base, "/predict", ETH, key=None)[0] == 200


CONNECT = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"


@pytest.fixture
def full_serving_dir(service):
    """The service's announcements directory on a tmpfs that is full (a real ENOSPC);
    yields (the directory, the filler file that takes its space)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = service[2] / "home" / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", folder], check=True)
    filler = folder / "filler"
    try:
        with filler.open("wb") as handle, contextlib.suppress(OSError):
            handle.write(b"\0" * (1024 * 1024))  # ENOSPC past 256 kB: the disk is full
        yield folder, filler
    finally:
        subprocess.run(["umount", "-l", folder], check=True)


def test_a_full_disk_for_announcements_takes_nothing_down_and_is_reported(
    service, full_serving_dir
):
    base, _, _, log, _ = service
    _, filler = full_serving_dir
    status, refreshed = call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)
    assert status == 200, refreshed  # answered, and this worker reloaded the stream
    state = refreshed["refreshed"][0]
    assert state["model_version"] and "error" not in state, state
    assert "No space left on device" in state["announcement"], state
    assert "/" not in state["announcement"].replace("…/", ""), state  # no file path
    assert {status for status, _ in predict_many(base)} == {200}
    health = call(base, "/health", key=None)[1]
    assert health["status"] == "degraded", health
    assert any("announcements not shared" in line for line in health["degraded"]), health
    assert call(base, "/readyz", key=None)[1]["ready"] is True
    metrics = call(base, "/metrics", key=None)[1]
    assert any(
        line.startswith("candlecast_store_failures_total{")
        and 'store="announcements"' in line
        and 'outcome="disk_full"' in line
        for line in metrics.splitlines()
    ), metrics[-3000:]
    call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)  # still failing: logged once
    assert log.read_text().count("other workers refresh periodically") == 1

    filler.unlink()  # space again
    status, refreshed = call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)
    assert status == 200 and "announcement" not in refreshed["refreshed"][0], refreshed
    assert call(base, "/health", key=None)[1]["status"] == "ok"


def refreshed(base: str) -> dict:
    """``POST /refresh`` of the stream: what the service says it did."""
    status, body = call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)
    assert status == 200, body
    return dict(body["refreshed"][0])


def test_a_refresh_that_finds_nothing_keeps_serving_and_readiness_follows_predict(
    service, redis_server
):
    """Defect 5 on a real ``bentoml serve``: after its BentoML model store is moved away, or
    the online store comes back empty (what a Redis restart without persistence leaves), a
    refresh says what it did not find and keeps the working snapshot: ``/predict`` answers as
    before and ``/readyz`` says ready. A service started while the stores hold nothing has
    nothing to keep: ``/readyz`` and ``/predict`` both answer 503, until the stores are back."""
    base, proxy, root, _, _ = service
    status, healthy = call(base, "/predict", ETH, key=None)
    assert status == 200 and healthy.get("stale_reason") is None, healthy
    version = refreshed(base)["model_version"]
    assert version, "the stream has a deployed model"
    models = root / "home" / "bentoml" / "models"
    moved = models.with_name("models.moved")
    online = redis.Redis(*redis_server.address, db=REDIS_DB)  # the server, not the proxy
    saved = {key: online.dump(key) for key in online.scan_iter()}
    assert saved, "the world materialized features into Redis"

    def keeps_serving(state: dict) -> None:
        assert state.get("error") and state.get("model_version") == version, state  # said
        status, answer = call(base, "/predict", ETH, key=None)
        assert status == 200 and answer["predicted_return"] == healthy["predicted_return"]
        status, ready = call(base, "/readyz", key=None)
        assert status == 200 and ready["ready"] is True, ready

    env = world.environment(root, faults.redis_settings(proxy, REDIS_DB))
    env["CANDLECAST_API_KEYS"] = ""
    url = f"http://127.0.0.1:{free_port()}"
    late = None

    def restore() -> None:
        if moved.exists():
            moved.rename(models)
        restarted = redis.Redis(*redis_server.address, db=REDIS_DB)  # a fresh connection
        for key, payload in saved.items():
            restarted.restore(key, 0, payload, replace=True)

    try:
        models.rename(moved)  # the BentoML store moved away
        keeps_serving(refreshed(base))
        moved.rename(models)
        assert "error" not in refreshed(base)
        redis_server.stop()  # Redis restarted, without persistence: empty
        redis_server.start()
        keeps_serving(refreshed(base))
        # a worker started now: nothing in memory, nothing in the online store
        command = embedded.bentoml_command("127.0.0.1", int(url.rsplit(":", 1)[1]))
        late = embedded.start(command, root / "serve-late.log", env)
        embedded.wait_http(f"{url}/livez", timeout=600, proc=late)
        status, ready = call(url, "/readyz", key=None)
        assert status == 503 and ready["ready"] is False, ready
        status, answer = call(url, "/predict", ETH, key=None)
        assert status == 503, answer
        restore()  # the stores back: the late worker serves what the first one does
        call(url, "/refresh", {"stream": "ETH/BTC"}, key=None)
        status, answer = wait_until(
            lambda: (found := call(url, "/predict", ETH, key=None))[0] == 200 and found,
            "the late worker serving once the stores are back",
        )
        assert answer["predicted_return"] == healthy["predicted_return"], answer
        status, ready = call(url, "/readyz", key=None)
        assert status == 200 and ready["ready"] is True, ready
    finally:
        restore()
        if late is not None:
            embedded.stop([late])
    assert "error" not in refreshed(base)


def test_the_workers_read_features_through_one_feature_reader_process_and_survive_its_kill(
    service,
):
    """Issue 18: the workers hold no Feast; the one process that opens it (the service's
    feature reader) reads their online rows. Killed with -9, it is respawned by BentoML, and
    meanwhile every request is answered (from memory, stale with why, while it is away)."""
    base, *_ = service
    status, healthy = call(base, "/predict", ETH, key=None)
    assert status == 200 and healthy.get("stale_reason") is None, healthy
    health = call(base, "/health", key=None)[1]
    worker, reader = health["process"], health["feature_reader"]
    assert worker["feast"] is False and reader["feast"] is True, health
    assert reader["pid"] != worker["pid"] and reader["training_libraries"] == []
    psutil.Process(reader["pid"]).kill()
    for status, body in predict_many(base):
        assert status == 200 and body["predicted_return"] == healthy["predicted_return"], body
        assert body.get("stale_reason") is None or "feature reader" in body["stale_reason"]

    def respawned():
        facts = call(base, "/health", key=None)[1]["feature_reader"]
        return facts.get("pid") not in (None, reader["pid"]) and facts

    assert wait_until(respawned, "a new feature reader process")["feast"] is True

    def fresh():
        status, body = call(base, "/predict", ETH, key=None)
        return status == 200 and body.get("stale_reason") is None and body

    assert (
        wait_until(fresh, "a fresh answer from the new reader")["predicted_return"]
        == (healthy["predicted_return"])
    )
    status, refreshed = call(base, "/refresh", {"stream": "ETH/BTC"}, key=None)
    assert status == 200 and "error" not in refreshed["refreshed"][0], refreshed


def test_a_serve_killed_with_9_is_replaced_and_its_successor_refuses_a_tampered_model(service):
    """Defects 7 and 6 on a real ``candlecast serve``: after a kill -9 of it, its workers still
    hold the port; the next ``candlecast serve`` on that port stops them and starts anew. A
    model file edited on disk (its sha256 no longer the one recorded at export) is refused by
    that service with a reason that names it, and served again once it is restored."""
    _, proxy, root, _, _ = service
    env = world.environment(root, faults.redis_settings(proxy, REDIS_DB))
    env["CANDLECAST_API_KEYS"] = ""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "candlecast"), "serve", "--port", str(port)]
    command += ["--host", "127.0.0.1"]
    models = root / "home" / "bentoml" / "models"
    files = sorted(models.glob("binance_eth_btc_5m_forecaster/*/model.onnx"))
    assert files, sorted(models.iterdir())
    first = embedded.start(command, root / "serve-first.log", env)
    orphans: list[psutil.Process] = []
    second = None
    originals = {path: path.read_bytes() for path in files}
    try:
        embedded.wait_http(f"{url}/readyz", timeout=600, proc=first)
        orphans = psutil.Process(first.pid).children(recursive=True)
        first.kill()  # kill -9 of `candlecast serve` (it became the server: exec)
        first.wait(timeout=60)
        assert any(child.is_running() for child in orphans)  # they hold the port
        for path, payload in originals.items():  # a valid size, one byte changed
            path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
        second = embedded.start(command, root / "serve-second.log", env)
        # the orphans answer on the port until the new serve has stopped them
        wait_until(
            lambda: not any(c.is_running() and c.status() != "zombie" for c in orphans),
            "the killed service's workers stopped by the next serve",
        )
        embedded.wait_http(f"{url}/livez", timeout=600, proc=second)
        assert "stopped what an earlier service left" in (root / "serve-second.log").read_text()
        status, answer = call(url, "/predict", ETH, key=None)
        assert status == 503 and "sha256" in str(answer), (status, answer)
        assert str(root) not in str(answer)  # no file path in the body
        assert call(url, "/readyz", key=None)[1]["ready"] is False
        for path, payload in originals.items():
            path.write_bytes(payload)
        call(url, "/refresh", {"stream": "ETH/BTC"}, key=None)
        status, answer = wait_until(
            lambda: (found := call(url, "/predict", ETH, key=None))[0] == 200 and found,
            "the restored model served",
        )
        assert answer["model"]["version"], answer
    finally:
        for path, payload in originals.items():
            path.write_bytes(payload)
        embedded.stop([proc for proc in (first, second) if proc is not None])
        for child in orphans:
            with contextlib.suppress(psutil.Error):
                child.kill()
