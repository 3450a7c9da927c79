"""Time each pipeline stage for the default pair on the bundled data and print the figures.

    .venv/bin/python bench/bench_pipeline.py [--days 130] [--repeat 3]

Runs in a throwaway CANDLECAST_HOME: a backfill of ``--days`` of history (ingest, validate,
features), then every stage for the last day, ``--repeat`` times (the first pass pays for
imports and store creation; later passes show steady-state cost).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import timedelta
from typing import Any


def timed(label: str, fn, *args: Any) -> tuple[str, float, Any]:
    started = time.perf_counter()
    result = fn(*args)
    return label, time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=130)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["CANDLECAST_HOME"] = tempfile.mkdtemp(prefix="candlecast-bench-")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from candlecast.orchestration import stages as pipeline

    pair = pipeline.pair_config("BTC/USD")
    end = pair.end.replace(hour=0, minute=0, second=0)
    start = end - timedelta(days=1)
    history = start - timedelta(days=args.days)
    rows = []
    for stage in ("ingest", "validate", "features"):
        label, seconds, result = timed(stage, getattr(pipeline, stage), pair, history, start)
        rows.append((f"backfill {args.days} d: {label}", seconds, result.get("rows", "")))
    for attempt in range(1, args.repeat + 1):
        for stage in ("ingest", "validate", "features", "materialize"):
            label, seconds, _ = timed(stage, getattr(pipeline, stage), pair, start, end)
            rows.append((f"pass {attempt}: {label}", seconds, 24))
        label, seconds, run = timed("train", pipeline.train, pair, end)
        rows.append((f"pass {attempt}: {label}", seconds, ""))
        stages = [
            ("promote", pipeline.promote, (pair, run["run_id"], run["model_uri"])),
            ("export_onnx", pipeline.export, (pair,)),
        ]
        exported = None
        for name, fn, fn_args in stages:
            label, seconds, exported = timed(name, fn, *fn_args)
            rows.append((f"pass {attempt}: {label}", seconds, ""))
        label, seconds, _ = timed("deploy", pipeline.deploy, pair, exported)
        rows.append((f"pass {attempt}: {label}", seconds, ""))
    print(f"{'stage':<34} {'seconds':>8} {'rows':>6}")
    for label, seconds, count in rows:
        print(f"{label:<34} {seconds:8.2f} {count!s:>6}")
    last = [s for label, s, _ in rows if label.startswith(f"pass {args.repeat}:")]
    print(f"{'steady-state pipeline, one day':<34} {sum(last):8.2f}")


if __name__ == "__main__":
    main()
