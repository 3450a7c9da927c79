"""The prediction service under faults: what clients get while a store fails, and how soon
answers are fresh (or logged) again once it is back.

Builds a served world (ETH/BTC 5m through the real pipeline) whose Feast online store is the
real Redis (database ``--redis-db``) behind a fault proxy, starts ``bentoml serve`` on
127.0.0.1, and for each fault keeps ``--clients`` clients calling ``/predict`` for
``--seconds``: first healthy, then with the fault on, right after announcing news
(``POST /refresh``, what every deploy and materialize does), which makes the service read the
failing store. Faults: Redis hung (the proxy accepts and forwards nothing), Redis refusing
(the proxy closed), and the forecast log's disk full (another writer filled the log to the
service's cap: SQLite's "database or disk is full"). Prints, per phase, the requests answered
(200) of those sent, p50/p99 latency, the answers marked stale, the ``/refresh`` call's time,
the recovery time (fault cleared until the first fresh answer, or until ``/health`` says the
log is written again) and the forecasts lost from the log. Then ``--kills`` times a kill -9 of
the worker under load: the answers not logged, and the loss window in seconds read from the
log (the kill's time less the serving time of the killed worker's newest logged forecast).

    .venv/bin/python bench/bench_faults.py [--seconds 10] [--clients 4] [--kills 5] [--world DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from candlecast.cli import embedded  # noqa: E402
from candlecast.testing.faultproxy import FaultProxy  # noqa: E402
from tests.serving import faults, world  # noqa: E402
from tests.serving.test_service import free_port  # noqa: E402

BODY = json.dumps({"pair": "ETH/BTC"}).encode()
HEADERS = {"Content-Type": "application/json"}


def request(port: int, method: str, path: str, body: bytes | None = None):
    """One request on a new connection (a kept-alive one may have been closed while idle)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        return exchange(conn, method, path, body)
    finally:
        conn.close()


def exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None):
    conn.request(method, path, body=body, headers=HEADERS if body else {})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def load(port: int, seconds: float, clients: int) -> dict[str, Any]:
    """``clients`` threads calling /predict for ``seconds``: sent, answered, stale, p50/p99
    and when each answer came (wall clock)."""
    results: list[tuple[int, float, bool]] = []
    answered_at: list[float] = []  # wall-clock time of each 200 (to compare with the log)
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, times = [], []
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                status, body = exchange(conn, "POST", "/predict", BODY)
                stale = bool(body and body.get("stale_reason"))
            except (OSError, http.client.HTTPException):
                status, stale = 0, False
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            mine.append((status, time.perf_counter() - started, stale))
            if status == 200:
                times.append(time.time())
        with lock:
            results.extend(mine)
            answered_at.extend(times)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = np.array([took for _, took, _ in results]) * 1000
    return {
        "sent": len(results),
        "answered": sum(status == 200 for status, _, _ in results),
        "stale": sum(stale for *_, stale in results),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "max_ms": float(latencies.max()),
        "answered_at": sorted(answered_at),
    }


def wait(check: Callable[[], bool], limit_s: float = 600) -> float:
    """Seconds until ``check()`` holds (polled every 10 ms)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit_s:
            raise TimeoutError("no recovery within the limit")
        time.sleep(0.01)
    return time.monotonic() - started


def fault_run(
    port: int, args: argparse.Namespace, start: Callable, clear: Callable, fresh: Callable
):
    """Healthy load, then the fault with news announced, then recovery: one row per phase."""
    healthy = load(port, args.seconds, args.clients)
    start()
    started = time.perf_counter()
    status, _ = request(port, "POST", "/refresh", json.dumps({"stream": "ETH/BTC"}).encode())
    refresh_s = time.perf_counter() - started
    during = load(port, args.seconds, args.clients)
    clear()
    recovery = wait(fresh)
    return healthy, {**during, "refresh_s": refresh_s, "refresh_status": status}, recovery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kills", type=int, default=5, help="kill -9 runs at the end")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--world", default="", help="a folder redis_world() ran in (reused)")
    args = parser.parse_args()
    proxy = FaultProxy(faults.REDIS)
    root = Path(args.world or tempfile.mkdtemp(prefix="bench-faults-"))
    try:
        if args.world:
            env = world.environment(
                root,
                {
                    "CANDLECAST_ONLINE_STORE": "redis",
                    "CANDLECAST_REDIS_URL": f"127.0.0.1:{proxy.port},db={args.redis_db}",
                    "CANDLECAST_SERVICE_FORECAST_LOG_MAX_MB": str(faults.LOG_CAP_MB),
                },
            )
        else:
            env = faults.redis_world(root, proxy, args.redis_db)
        env |= {"CANDLECAST_API_KEYS": "", "CANDLECAST_SERVICE_ACCESS_LOG": "false"}
        run(root, env, proxy, args)
    finally:
        proxy.close()
        redis.Redis(*faults.REDIS, db=args.redis_db).flushdb()


def run(root: Path, env: dict[str, str], proxy: FaultProxy, args: argparse.Namespace) -> None:
    port = free_port()
    log = root / "bentoml.log"
    service = embedded.start(embedded.bentoml_command("127.0.0.1", port), log, env)
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=service)
        polled = [0]  # answers of the polls below, logged like any other

        def fresh_answer() -> bool:
            status, body = request(port, "POST", "/predict", BODY)
            polled[0] += status == 200
            return status == 200 and not body.get("stale_reason")

        def log_ok() -> bool:
            polled[0] += request(port, "POST", "/predict", BODY)[0] == 200
            return request(port, "GET", "/health")[1]["status"] == "ok"

        path = root / "home" / "forecasts" / "forecast_log.db"
        rows = []
        for name, start, clear, fresh in (
            ("Redis hung", lambda: proxy.set("hang"), lambda: proxy.set("pass"), fresh_answer),
            (
                "Redis refusing",
                lambda: proxy.set("refuse"),
                lambda: proxy.set("pass"),
                fresh_answer,
            ),
            (
                "forecast log disk full",
                lambda: faults.fill_log(path),
                lambda: faults.clear_log(path),
                log_ok,
            ),
        ):
            load(port, 2, args.clients)  # settle
            wait(log_ok)
            time.sleep(2)  # one flush tick after the last answers
            before, polled[0] = faults.service_rows(path), 0
            healthy, during, recovery = fault_run(port, args, start, clear, fresh)
            wait(log_ok)
            time.sleep(2)  # one flush tick after the last answers
            answered = healthy["answered"] + during["answered"] + polled[0]
            lost = answered - (faults.service_rows(path) - before)
            rows.append((name, healthy, during, recovery, lost))
        print_table(rows, args)
        print(f"\nservice log lines mentioning the faults: {faulty_lines(log)}")
        windows = [crash(port, service, path, args, polled) for _ in range(args.kills)]
        print(
            f"\nkill -9 loss window over {len(windows)} kills: worst {max(windows):.2f} s, "
            f"median {float(np.median(windows)):.2f} s of answers"
        )
    finally:
        embedded.stop([service])


def crash(port: int, service, path: Path, args: argparse.Namespace, polled: list[int]) -> float:
    """kill -9 of the serving worker halfway through ``--seconds`` of load: the answers it gave
    that never reached the log, in answers and in seconds (the kill's time less the serving
    time of the newest forecast the killed worker logged, read from the log itself), and how
    soon the respawned worker answers."""
    import psutil

    wait(lambda: request(port, "GET", "/health")[1]["status"] == "ok")
    time.sleep(2)  # one flush tick after the last answers
    before, polled[0] = faults.service_rows(path), 0
    workers = [
        p for p in psutil.Process(service.pid).children(recursive=True)
        if "_bentoml_impl.worker" in " ".join(p.cmdline())
    ]  # fmt: skip
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.time())
        for worker in workers:
            worker.kill()

    killer = threading.Timer(args.seconds / 2, kill)
    killer.start()
    during = load(port, args.seconds, args.clients)
    killer.join()

    def answering() -> bool:
        try:
            ok = request(port, "POST", "/predict", BODY)[0] == 200
        except (OSError, http.client.HTTPException):
            return False
        polled[0] += ok
        return ok

    back = wait(answering)
    time.sleep(2)  # one flush tick after the last answers
    answered = during["answered"] + polled[0]
    lost = answered - (faults.service_rows(path) - before)
    kill_s = killed_at[0]
    newest = faults.newest_service_row(path, until_ms=int(kill_s * 1000)) / 1000
    times = np.array(during["answered_at"])
    last_second = int(((times > kill_s - 1) & (times <= kill_s)).sum())
    unlogged = int(((times > newest) & (times <= kill_s)).sum())
    print(
        f"\nworker killed (kill -9) under load: {during['answered']}/{during['sent']} answered, "
        f"{lost} answered forecasts not logged; the killed worker's newest logged forecast was "
        f"served {kill_s - newest:.2f} s before the kill ({unlogged} answers after it, "
        f"{last_second} in the last second before the kill); answering again {back:.1f} s "
        "after the load ended"
    )
    return kill_s - newest


def faulty_lines(log: Path) -> int:
    text = log.read_text(errors="replace").splitlines()
    return sum("online store" in line or "forecast log" in line for line in text)


def print_table(rows: list, args: argparse.Namespace) -> None:
    print(f"\n/predict, {args.clients} clients, {args.seconds:.0f} s per phase (one worker)\n")
    print(
        "| fault | phase | answered/sent | stale | p50 ms | p99 ms | max ms | "
        "POST /refresh | recovery s | forecasts lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, healthy, during, recovery, lost in rows:
        for phase, m in (("healthy", healthy), ("during", during)):
            refresh = f"{m['refresh_status']} in {m['refresh_s']:.2f} s" if "refresh_s" in m else ""
            tail = f"{recovery:.2f} | {lost}" if phase == "during" else " | "
            print(
                f"| {name} | {phase} | {m['answered']}/{m['sent']} | {m['stale']} | "
                f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['max_ms']:.1f} | {refresh} | {tail} |"
            )


if __name__ == "__main__":
    main()
