"""Time every model kind on a year of real hourly candles and print the figures.

    .venv/bin/python bench/bench_models.py [--kinds lightgbm,lstm] [--rows 8760] [--repeat 200]

Per kind: fit time on the year's feature rows (window inputs as training builds them), then
inference per row (one row at a time, median of ``--repeat`` calls) and per 1,000-row batch,
native against ONNX (onnxruntime, one intra-op and one inter-op thread, as serving uses it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def year_of_rows(rows: int) -> pd.DataFrame:
    from candlecast.data.importers import read_history
    from candlecast.features.engineering import compute_features, next_return

    candles = read_history(REPO / "data" / "bundled" / "BTC_USD-Hourly.csv").tail(rows + 300)
    features = compute_features(candles, "1h", "replay:BTC/USD")
    target = next_return(candles, "1h")
    frame = features.merge(target, on="event_timestamp")
    return frame.tail(rows).reset_index(drop=True)


def timed_calls(fn, repeat: int) -> float:
    """Median seconds of one call."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def onnx_session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    payload = model.to_onnx().SerializeToString()
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def bench_kind(name: str, frame: pd.DataFrame, repeat: int) -> tuple:
    from candlecast.modeling.datasets import kind_features
    from candlecast.modeling.kinds import get_kind
    from candlecast.modeling.kinds.base import window_inputs

    kind = get_kind(name)
    model = kind(kind_features(kind))
    x, usable = window_inputs(frame, model.spec.features, model.window, 3_600_000)
    usable &= np.isfinite(x).all(axis=1)
    x, y = x[usable], frame["target"].to_numpy()[usable]
    started = time.perf_counter()
    model.fit(x, y)
    fit_s = time.perf_counter() - started
    session = onnx_session(model)
    feed = session.get_inputs()[0].name
    one, batch = x[-1:], x[-1000:]
    one32, batch32 = one.astype(np.float32), batch.astype(np.float32)
    return (
        name,
        len(x),
        fit_s,
        timed_calls(lambda: model.predict(one), repeat) * 1e6,
        timed_calls(lambda: session.run(None, {feed: one32}), repeat) * 1e6,
        timed_calls(lambda: model.predict(batch), max(repeat // 20, 5)) * 1e3,
        timed_calls(lambda: session.run(None, {feed: batch32}), max(repeat // 20, 5)) * 1e3,
    )


def main() -> None:
    from candlecast.modeling.kinds import kind_names

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kinds", default=",".join(kind_names()))
    parser.add_argument("--rows", type=int, default=8760, help="feature rows (a year of 1h)")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    frame = year_of_rows(args.rows)
    header = ("kind", "rows", "fit s", "1 row native us", "1 row onnx us")
    header += ("1000 rows native ms", "1000 rows onnx ms")
    print(" | ".join(header))
    for name in args.kinds.split(","):
        row = bench_kind(name, frame, args.repeat)
        print(f"{row[0]} | {row[1]} | {row[2]:.2f} | " + " | ".join(f"{v:.1f}" for v in row[3:]))


if __name__ == "__main__":
    main()
