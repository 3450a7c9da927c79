"""LightGBM ONNX parity over many training windows: onnxmltools' graph as converted, against
the graph with exact float32 thresholds (:mod:`candlecast.modeling.kinds.onnx_thresholds`).

    .venv/bin/python bench/bench_onnx_parity.py [--file freqtrade/ETH_BTC-5m.feather]
        [--timeframe 5m] [--days 7] [--step-hours 2] [--windows 40]

Per window (ending ``--step-hours`` apart, ``--days`` long): the LightGBM kind fitted on the
window's feature rows as training builds them (float32 values), then the largest absolute and
relative difference between its forecasts and each ONNX graph's on the same rows, and whether
that passes the export's parity check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOUR_MS = 3_600_000


def feature_rows(file: Path, timeframe: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, next-candle log returns, open times) of the file's candles."""
    from candlecast.data.importers import read_history
    from candlecast.features.engineering import FEATURE_COLUMNS, compute_features, next_return
    from candlecast.modeling.kinds.base import model_inputs

    candles = read_history(file)
    features = compute_features(candles, timeframe, f"bench:{file.stem}")
    frame = features.merge(next_return(candles, timeframe), on="event_timestamp")
    frame = frame.dropna(subset=[*FEATURE_COLUMNS, "target"]).reset_index(drop=True)
    return model_inputs(frame, FEATURE_COLUMNS), frame["target"].to_numpy(), frame["candle_ts"]


def as_converted(model, n_features: int):
    """onnxmltools' graph without the threshold correction (what export used before)."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    from candlecast.modeling.kinds.base import IR_VERSION, ONNX_INPUT, TARGET_OPSET

    converted = convert_lightgbm(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        zipmap=False,
    )
    converted.ir_version = min(converted.ir_version, IR_VERSION)
    return converted


def main() -> None:
    from candlecast.features.engineering import FEATURE_COLUMNS
    from candlecast.modeling.kinds import get_kind
    from candlecast.modeling.onnx_export import RELATIVE_TOLERANCE, parity, run_onnx
    from candlecast.settings import get_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--file", default="freqtrade/ETH_BTC-5m.feather")
    parser.add_argument("--timeframe", default="5m")
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--step-hours", type=int, default=2)
    parser.add_argument("--windows", type=int, default=40)
    args = parser.parse_args()
    x_all, y_all, times = feature_rows(REPO / "data" / "bundled" / args.file, args.timeframe)
    tolerance = get_settings().parity_tolerance
    passes = {"as converted": 0, "exact thresholds": 0}
    worst = dict.fromkeys(passes, 0.0)
    last = int(times.iloc[-1])
    for k in range(args.windows):
        end = last - k * args.step_hours * HOUR_MS
        chosen = ((times > end - args.days * 24 * HOUR_MS) & (times <= end)).to_numpy()
        model = get_kind("lightgbm")(list(FEATURE_COLUMNS))
        model.fit(x_all[chosen], y_all[chosen])
        native = model.predict(x_all[chosen])
        graphs = {
            "as converted": as_converted(model.model, len(FEATURE_COLUMNS)),
            "exact thresholds": model.to_onnx(),
        }
        line = [f"window ending {end}: {int(chosen.sum())} rows"]
        for name, graph in graphs.items():
            diff, relative = parity(run_onnx(graph.SerializeToString(), x_all[chosen]), native)
            passes[name] += diff <= tolerance and relative <= RELATIVE_TOLERANCE
            worst[name] = max(worst[name], diff)
            line.append(f"{name} {diff:.3g} ({relative:.3g} relative)")
        print("; ".join(line), flush=True)
    for name in passes:
        print(
            f"{name}: {passes[name]} of {args.windows} windows pass parity, "
            f"worst absolute difference {worst[name]:.3g}"
        )


if __name__ == "__main__":
    main()
