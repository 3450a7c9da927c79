"""Prediction service throughput and latency, side by side with a minimal server.

Builds a served world (ETH/BTC 5m through the real pipeline, then a real LightGBM deployed so
both servers run a non-trivial model), starts ``bentoml serve`` (candlecast) and the minimal
FastAPI + onnxruntime server of ``bench/minimal_server.py`` (same model, Feast online read per
request), and measures with wrk (/usr/bin/wrk): ``/predict`` requests/s and p50/p99 at each
concurrency, and ``/predict_batch`` rows/s with 10,000-row bodies. Prints a Markdown table.

With ``--streams 3,50,300`` it measures instead what the service costs per stream: for each
count, that many served streams (ETH/BTC and clones of it on synthetic exchanges, each with
its own deployed model and online row, :func:`tests.serving.world.serve_clones`), a fresh
``bentoml serve``: start-up until ``/readyz`` and every stream loaded, the worker's resident
memory (its own ``/health`` report), the feature reader process's (the one that opens Feast,
from the same report) and the supervisor's, whether the worker holds torch, a training library
or Feast, and /predict p50/p99 paced at ``--rate`` requests/s spread over the streams.

    .venv/bin/python bench/bench_serving.py [--seconds 10] [--workers 1] [--no-access-log]
    .venv/bin/python bench/bench_serving.py --streams 3,50,300 [--rate 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from candlecast.cli import embedded  # noqa: E402
from tests.serving import world  # noqa: E402
from tests.serving.test_service import free_port  # noqa: E402

WRK = "/usr/bin/wrk"
BATCH_ROWS = 10_000
LUA = """
local f = io.open("{body}", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(
    url: str, body: Path, connections: int, seconds: int, root: Path, rate: float = 0
) -> dict[str, float]:
    """wrk's figures; ``rate`` > 0 paces the connections to about that many requests/s in all
    (each waits ``connections / rate`` s between requests): latency at a given load, not at
    saturation, where the client and the server share this machine's cores."""
    script = root / f"{body.stem}.lua"
    pacing = f"function delay() return {connections * 1000 / rate:.3f} end\n" if rate else ""
    script.write_text(LUA.format(body=body) + pacing)
    threads = max(1, min(2, connections))
    options = [f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run(
        [WRK, *options, "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def start_servers(root: Path, env: dict[str, str], tag: str) -> tuple[list, str, str]:
    ours, base = free_port(), free_port()
    service = embedded.start(
        embedded.bentoml_command("127.0.0.1", ours), root / "candlecast.log", env
    )
    name, version = tag.split(":")
    folder = Path(env["BENTOML_HOME"]) / "models" / name / version
    quiet = ["--log-level", "warning", "--no-access-log"]
    minimal = embedded.start(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "bench.minimal_server:app",
            *quiet,
            "--port",
            str(base),
        ],
        root / "minimal.log",
        {**env, "BENCH_MODEL_DIR": str(folder), "PYTHONPATH": str(REPO)},
    )
    embedded.wait_http(f"http://127.0.0.1:{ours}/readyz", timeout=600, proc=service)
    embedded.wait_http(f"http://127.0.0.1:{base}/docs", timeout=600, proc=minimal)
    return [service, minimal], f"http://127.0.0.1:{ours}", f"http://127.0.0.1:{base}"


STREAMS_LUA = """
local n = {count}
request = function()
  local i = math.random(0, n - 1)
  local body
  if i == 0 then body = '{{"pair": "ETH/BTC", "exchange": "binance", "timeframe": "5m"}}'
  else
    local fields = '{{"pair": "ETH/BTC", "exchange": "synth%04d", "timeframe": "5m"}}'
    body = string.format(fields, i - 1)
  end
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def footprint(root: Path, env: dict[str, str], count: int, seconds: int, rate: float) -> dict:
    """One fresh service over ``count`` served streams: start-up, memory, paced latency."""
    import time
    import urllib.request

    served = int(world.run_in(env, f"w.serve_clones({count - 1}, {count - 1})"))
    port = free_port()
    started = time.perf_counter()
    service = embedded.start(
        embedded.bentoml_command("127.0.0.1", port), root / f"footprint-{count}.log", env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        embedded.wait_http(f"{base}/readyz", timeout=600, proc=service)
        with urllib.request.urlopen(f"{base}/health", timeout=600) as answer:
            health = json.loads(answer.read())
        startup = time.perf_counter() - started
        loaded = sum(1 for s in health["streams"].values() if "model_version" in s)
        process = health["process"]
        script = root / f"streams-{count}.lua"
        connections = 16
        pacing = f"function delay() return {connections * 1000 / rate:.3f} end\n"
        script.write_text(STREAMS_LUA.format(count=count) + pacing)
        out = subprocess.run(
            [
                WRK,
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(script),
                base + "/predict",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        with urllib.request.urlopen(f"{base}/health", timeout=600) as answer:
            later = json.loads(answer.read())
        after, reader = later["process"], later.get("feature_reader") or {}
        return {
            "streams": served,
            "loaded": loaded,
            "startup_s": startup,
            "worker_mb": process["rss_bytes"] / 2**20,
            "worker_after_load_mb": after["rss_bytes"] / 2**20,
            "supervisor_mb": rss_mb(service.pid),
            "reader_mb": reader.get("rss_bytes", 0) / 2**20,
            "training_libraries": process["training_libraries"],
            "worker_feast": process.get("feast", True),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
            "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
            "non2xx": re.search(r"Non-2xx or 3xx responses: (\d+)", out),
        }
    finally:
        service.terminate()
        service.wait(timeout=60)


def main_streams(counts: list[int], seconds: int, rate: float, built: str) -> None:
    root = Path(built or tempfile.mkdtemp(prefix="bench-serving-streams-"))
    env = world.environment(root) if built else world.build(root)
    env["CANDLECAST_SERVICE_ACCESS_LOG"] = "false"
    rows = [footprint(root, env, count, seconds, rate) for count in sorted(counts)]
    load = os.getloadavg()
    print(
        f"\ncores={os.cpu_count()} load average after run: {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; /predict paced at {rate:g}/s over the streams, 16 connections\n"
    )
    print(
        "| streams | start-up s | worker MB | worker MB after load | feature reader MB | "
        "supervisor MB | training libs in worker | Feast in worker | req/s | p50 ms | p99 ms "
        "| non-2xx |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        errors = r["non2xx"].group(1) if r["non2xx"] else "0"
        print(
            f"| {r['streams']} ({r['loaded']} loaded) | {r['startup_s']:.1f} | "
            f"{r['worker_mb']:.0f} | {r['worker_after_load_mb']:.0f} | {r['reader_mb']:.0f} | "
            f"{r['supervisor_mb']:.0f} | {', '.join(r['training_libraries']) or 'none'} | "
            f"{'yes' if r['worker_feast'] else 'no'} | {r['rps']:,.0f} | "
            f"{r['p50']:.2f} | {r['p99']:.2f} | {errors} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        per = (last["worker_after_load_mb"] - first["worker_after_load_mb"]) / (
            last["streams"] - first["streams"]
        )
        print(f"\nworker memory per added stream: {per * 1024:.0f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument(
        "--rate", type=float, default=1000, help="also measure at this paced load (0: no)"
    )
    parser.add_argument(
        "--streams", default="", help="e.g. 3,50,300: memory, start-up and latency per count"
    )
    parser.add_argument("--world", default="", help="a folder world.build() ran in (reused)")
    args = parser.parse_args()
    if args.streams:
        counts = [int(c) for c in args.streams.split(",")]
        main_streams(counts, args.seconds, args.rate or 1000, args.world)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = world.build(root)
    tag = world.run_in(env, "w.deploy_lightgbm('ETH/BTC', '900', n_estimators=200)")
    env["CANDLECAST_SERVICE_WORKERS"] = str(args.workers)
    env["CANDLECAST_SERVICE_ACCESS_LOG"] = "false" if args.no_access_log else "true"
    features = json.loads(
        Path(
            Path(env["BENTOML_HOME"]) / "models" / tag.replace(":", "/") / "export.json"
        ).read_text()
    )["card"]["features"]
    one = root / "predict.json"
    one.write_text(json.dumps({"pair": "ETH/BTC"}))
    batch = root / "batch.json"
    rows = [[0.001 * (i % 97) + j * 0.01 for j in range(len(features))] for i in range(BATCH_ROWS)]
    batch.write_text(json.dumps({"pair": "ETH/BTC", "features": features, "rows": rows}))
    procs, ours, base = start_servers(root, env, tag)
    try:
        table = []
        for connections in [int(c) for c in args.concurrency.split(",")]:
            for label, url in (("candlecast", ours), ("minimal", base)):
                wrk(url + "/predict", one, connections, 2, root)  # warm-up
                table.append(
                    (
                        label,
                        f"/predict c={connections}",
                        wrk(url + "/predict", one, connections, args.seconds, root),
                    )
                )
                if args.rate:
                    paced = wrk(url + "/predict", one, connections, args.seconds, root, args.rate)
                    table.append((label, f"/predict c={connections} at {args.rate:g}/s", paced))
        for label, url in (("candlecast", ours), ("minimal", base)):
            table.append(
                (
                    label,
                    f"/predict_batch {BATCH_ROWS} rows c=2",
                    wrk(url + "/predict_batch", batch, 2, args.seconds, root),
                )
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
    load = os.getloadavg()
    print(
        f"\nworkers={args.workers} access_log={not args.no_access_log} cores={os.cpu_count()} "
        f"load average after run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    print("| server | endpoint | req/s | rows/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for label, what, m in table:
        rows_s = m["rps"] * BATCH_ROWS if "batch" in what else m["rps"]
        figures = f"{m['rps']:,.0f} | {rows_s:,.0f} | {m['p50']:.2f} | {m['p99']:.2f}"
        print(f"| {label} | {what} | {figures} | {m['errors']:.0f} |")


if __name__ == "__main__":
    main()
