"""How long Airflow takes to parse the DAG file, for 1 to 300 configured streams.

    .venv/bin/python bench/bench_dags.py [--pairs 1,10,100,300] [--repeat 3]

For each size, a pair config of that many streams (distinct symbols on binance at 1h) is
written to a temporary file and the project's DAG folder is parsed in a fresh process, as the
dag-processor does (``DagBag``), timing the parse alone (imports warmed by one parse of an
empty config first, as in a long-lived dag-processor) and the whole process. Then the same for
a task run: with Airflow's parsing context naming one DAG (what the task runner sets), the
factory builds only that DAG. Prints the best of ``--repeat`` runs. Aim: 300 pairs < 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PARSE = r"""
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
folder = sys.argv[1]
config, real = os.environ["CANDLECAST_PAIRS"], sys.argv[2]
os.environ["CANDLECAST_PAIRS"] = sys.argv[3]  # warm-up: the imports, on a one-pair config
DagBag(dag_folder=folder, include_examples=False)
os.environ["CANDLECAST_PAIRS"] = real
started = time.perf_counter()
bag = DagBag(dag_folder=folder, include_examples=False)
seconds = time.perf_counter() - started
print("RESULT " + json.dumps({"seconds": seconds, "dags": len(bag.dag_ids),
                              "errors": len(bag.import_errors)}))
"""


def config_text(pairs: int) -> str:
    lines = ["pairs:"]
    for index in range(pairs):
        base = f"C{index:03d}X"
        lines.append(f"  - {{symbol: {base}/USDT, exchange: binance, timeframe: 1h}}")
    return "\n".join(lines) + "\n"


def parse(config: Path, warm: Path, only: str | None) -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env["CANDLECAST_PAIRS"] = str(config)
    if only:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = only
        env["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "ingest"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(REPO / "dags"), str(config), str(warm)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"parse failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT ")), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", default="1,10,100,300")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="candlecast-bench-dags-"))
    os.environ.setdefault("CANDLECAST_HOME", str(home))
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    warm = home / "warm.yaml"
    warm.write_text(config_text(1))
    print(f"{'pairs':>6} {'dags':>5} {'parse s':>8} {'process s':>10} "
          f"{'one DAG s':>10} {'one DAG process s':>18}")  # fmt: skip
    for pairs in (int(n) for n in args.pairs.split(",")):
        config = home / f"pairs-{pairs}.yaml"
        config.write_text(config_text(pairs))
        runs = [parse(config, warm, None) for _ in range(args.repeat)]
        task = [parse(config, warm, "train_binance_c000x_usdt_1h") for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r[0]["seconds"])
        one = min(task, key=lambda r: r[0]["seconds"])
        if best[0]["errors"] or one[0]["dags"] != 1:
            raise RuntimeError(f"{pairs} pairs: {best[0]} / {one[0]}")
        print(
            f"{pairs:>6} {best[0]['dags']:>5} {best[0]['seconds']:>8.3f} "
            f"{min(r[1] for r in runs):>10.2f} {one[0]['seconds']:>10.3f} "
            f"{min(r[1] for r in task):>18.2f}"
        )


if __name__ == "__main__":
    main()
