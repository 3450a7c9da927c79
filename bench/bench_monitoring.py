"""One full monitoring check of 10,000 rows x 50 features: drift + realized performance.

    .venv/bin/python bench/bench_monitoring.py [--rows 10000] [--features 50] [--repeat 3]

Real data: the bundled BTC/USD hourly features (the stream's own 15 and the 3x and 12x higher
timeframes' 30, plus the 1-hour return lagged 1 to 5 hours: 50 columns), the first ``rows``
rows as the reference and the next ``rows`` as the current window. The forecasts of a small
mean-reversion rule go through the real forecast log (written, read back) and are joined with
the realized returns. Prints each part's best time of ``repeat`` runs (after one warm-up run
that also pays Evidently's import), and the Evidently HTML report's time, built only where a
check keeps it. Aim: under 3 s for the check.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["CANDLECAST_HOME"] = tempfile.mkdtemp(prefix="candlecast-bench-monitoring-")

    import numpy as np

    from candlecast.data.importers import read_history
    from candlecast.features.engineering import MULTI_TIMEFRAME_COLUMNS
    from candlecast.modeling.evaluate import evaluation_frame
    from candlecast.monitoring.drift import data_drift, prediction_drift, report_html
    from candlecast.monitoring.performance import (
        join_realized,
        realized_performance,
        realized_returns,
    )
    from candlecast.serving.forecast_log import ForecastLog, read_forecasts
    from candlecast.timeframes import ms_to_iso

    candles = read_history(REPO / "data" / "bundled" / "BTC_USD-Hourly.csv")
    rows = evaluation_frame(candles, "1h", "replay:BTC/USD").dropna().reset_index(drop=True)
    for lag in range(1, 6):
        rows[f"ret_1_lag{lag}"] = rows["ret_1"].shift(lag)
    rows = rows.dropna().reset_index(drop=True)
    columns = [*MULTI_TIMEFRAME_COLUMNS, *(f"ret_1_lag{lag}" for lag in range(1, 6))]
    columns = columns[: args.features]
    n = args.rows
    if len(rows) < 2 * n:
        raise SystemExit(f"only {len(rows)} rows: use --rows {len(rows) // 2} or fewer")
    reference, current = rows.iloc[:n], rows.iloc[n : 2 * n]
    predicted = -0.05 * current["ret_1"].to_numpy(dtype=np.float64)
    holdout = -0.05 * reference["ret_1"].to_numpy(dtype=np.float64)[-2000:]

    log_path = Path(os.environ["CANDLECAST_HOME"]) / "forecast_log.db"
    log = ForecastLog(log_path, flush_interval=3600)
    started = time.perf_counter()
    for ts, value in zip(current["candle_ts"].to_numpy() + 3_600_000, predicted, strict=True):
        log.record(
            {
                "stream": "bench",
                "model": {"version": "1"},
                "feature_timestamp": ms_to_iso(int(ts)),
                "forecast_for": ms_to_iso(int(ts) + 3_600_000),
                "predicted_return": float(value),
                "interval": {"return": [float(value) - 0.01, float(value) + 0.01]},
            }
        )
    record_s = time.perf_counter() - started
    log.close()
    returns = realized_returns(candles, "1h")

    def check() -> dict[str, float]:
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        drift = data_drift(reference, current, columns)
        t1 = time.perf_counter()
        served = prediction_drift(holdout, predicted)
        t2 = time.perf_counter()
        realized = realized_performance(
            join_realized(read_forecasts("bench", path=log_path), returns)
        )
        t3 = time.perf_counter()
        assert realized is not None and realized.forecasts == n and served is not None
        times.update(drift=t1 - t0, prediction=t2 - t1, realized=t3 - t2, total=t3 - t0)
        times["share"] = drift.share
        return times

    check()  # warm-up: imports Evidently's tests and scipy
    runs = [check() for _ in range(args.repeat)]
    best = {key: min(run[key] for run in runs) for key in runs[0]}
    started = time.perf_counter()
    html = report_html(reference, current, data_drift(reference, current, columns))
    report_s = time.perf_counter() - started
    print(f"{n:,} rows x {len(columns)} features, reference and current; best of {args.repeat}")
    print(
        f"  data drift (Evidently tests)   {best['drift']:.3f} s  "
        f"(drifted share {best['share']:.2f})"
    )
    print(f"  prediction drift               {best['prediction']:.3f} s")
    print(f"  realized performance (log+join) {best['realized']:.3f} s")
    print(f"  one full check                 {best['total']:.3f} s  (aim < 3 s)")
    print(f"  forecast log: {n:,} record() calls {record_s * 1e6 / n:.1f} us each")
    print(f"  Evidently HTML report (kept)   {report_s:.3f} s, {len(html) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
