"""Time each pipeline stage for one configured stream on the bundled data and print the figures.

    .venv/bin/python bench/bench_pipeline.py [--pair BTC/USD] [--days 130] [--repeat 3]

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
    parser.add_argument("--pair", default="BTC/USD", help="symbol or stream key")
    args = parser.parse_args()
    os.environ["CANDLECAST_HOME"] = tempfile.mkdtemp(prefix="candlecast-bench-")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from candlecast.orchestration import stages

    pair = stages.pair_config(args.pair)
    start, end = stages.last_complete_day(pair)
    history = start - timedelta(days=args.days)
    rows: list[tuple[str, float, object]] = []
    label, seconds, fetched = timed("ingest", stages.ingest, pair, history, start)
    rows.append((f"backfill {args.days} d: {label}", seconds, fetched.rows))
    label, seconds, report = timed("validate", stages.validate, pair, history, start)
    rows.append((f"backfill {args.days} d: {label}", seconds, report.rows))
    label, seconds, written = timed("features", stages.features, pair, history, start)
    rows.append((f"backfill {args.days} d: {label}", seconds, written.rows))
    for attempt in range(1, args.repeat + 1):
        for name, stage in (
            ("ingest", stages.ingest),
            ("validate", stages.validate),
            ("features", stages.features),
            ("materialize", stages.materialize),
        ):
            label, seconds, _ = timed(name, stage, pair, start, end)
            rows.append((f"pass {attempt}: {label}", seconds, ""))
        label, seconds, trained = timed("train", stages.train, pair, end)
        rows.append((f"pass {attempt}: {label}", seconds, len(trained.runs)))
        best = trained.challenger
        label, seconds, _ = timed("promote", stages.promote, pair, best.run_id, best.model_uri)
        rows.append((f"pass {attempt}: {label}", seconds, ""))
        label, seconds, exported = timed("export_onnx", stages.export, pair)
        rows.append((f"pass {attempt}: {label}", seconds, ""))
        label, seconds, _ = timed("deploy", stages.deploy, pair, exported)
        rows.append((f"pass {attempt}: {label}", seconds, ""))
    print(f"{'stage':<34} {'seconds':>8} {'rows':>6}")
    for label, seconds, count in rows:
        print(f"{label:<34} {seconds:8.2f} {count!s:>6}")
    last = [s for label, s, _ in rows if label.startswith(f"pass {args.repeat}:")]
    print(f"{'steady-state pipeline, one day':<34} {sum(last):8.2f}")


if __name__ == "__main__":
    main()
