"""Time candle ingestion (real ccxt client against the local Binance server) and validation.

    .venv/bin/python bench/bench_data.py [--rows 500000] [--repeat 3] [--minute-days 30]
                                         [--rate-limit-ms 0] [--stages 1,2,3,4]
                                         [--baseline <git rev>]

Runs in a throwaway CANDLECAST_HOME. Stages:

1. a year (2021) of the bundled BTC/USD hourly candles, served as BTC/USDT by
   :class:`~candlecast.exchange_server.ExchangeServer`, ingested through :class:`CcxtSource`
   (the real ccxt ``binance`` client over HTTP), then ``data.validate``;
2. a month of 1m candles: the bundled 1m file holds ~10 days, so its days are repeated, shifted
   in time by whole 10-day blocks (prices scaled per copy so each copy opens where the previous
   one closed; the real gaps are kept), served, ingested and validated;
3. ``validate_candles`` on ``--rows`` 1m candles: the real 1m candles tiled onto a contiguous
   1m grid (prices scaled per tile as above), first call and best of ``--repeat``;
4. the cost of findings per row: ``validate_candles`` of this tree (rows refused or flagged
   one by one) against the batch validation of ``--baseline`` (default: the commit this
   branch started from, ``git merge-base HEAD main``), on the stage 3 grid as it is and with
   0.5% of its rows made impossible (zero open); each in its own process, best of
   ``--repeat`` after a warm-up call. Aim: at most 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BTC_HOURLY = REPO / "data" / "bundled" / "BTC_USD-Hourly.csv"
MINUTE_FILE = REPO / "data" / "bundled" / "freqtrade" / "UNITTEST_BTC-1m.feather"
MINUTE, BLOCK = 60_000, 10 * 86_400_000  # 1m in ms; the span one copy of the 1m file covers
AIM_ROWS, AIM_S = 500_000, 5.0


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def ge_state() -> str:
    return "warm" if "great_expectations" in sys.modules else "cold: includes GE import"


def checked(validate, *args):
    """``validate``'s report, also when it raises on a failed batch."""
    from candlecast.errors import CandleValidationError

    try:
        return validate(*args)
    except CandleValidationError as exc:
        return exc.report


def verdict(report) -> str:
    failed = ", ".join(f"{f.expectation}({f.column})" for f in report.failures)
    return "pass" if report.success else f"FAIL: {failed}"


def scaled_copies(frame: pd.DataFrame, copies: int) -> list[pd.DataFrame]:
    """``copies`` of the candles, each price-scaled to open where the previous copy closed."""
    out, factor = [], 1.0
    for _ in range(copies):
        copy = frame.copy()
        copy[["open", "high", "low", "close"]] *= factor
        out.append(copy)
        factor = copy["close"].iloc[-1] / frame["open"].iloc[0]
    return out


def month_of_minutes(days: int) -> pd.DataFrame:
    """The real 1m candles repeated in 10-day blocks, shifted in time, to cover ``days``."""
    from candlecast.data.importers import read_history

    real = read_history(MINUTE_FILE)
    copies = scaled_copies(real, days // 10 + 2)
    for index, copy in enumerate(copies):
        copy["ts"] += index * BLOCK
    return pd.concat(copies, ignore_index=True)


def minute_grid(rows: int) -> pd.DataFrame:
    """``rows`` real 1m candles, tiled (prices scaled per tile) on a contiguous 1m grid."""
    from candlecast.data.importers import read_history

    real = read_history(MINUTE_FILE)
    tiles = scaled_copies(real, -(-rows // len(real)))
    grid = pd.concat(tiles, ignore_index=True).iloc[:rows].copy()
    grid["ts"] = real["ts"].iloc[0] + MINUTE * pd.RangeIndex(rows).to_numpy(dtype="int64")
    return grid


def pair_for(symbol: str, timeframe: str, start: datetime, end: datetime):
    from candlecast.config import PairConfig

    fields = {"symbol": symbol, "exchange": "binance", "timeframe": timeframe}
    return PairConfig(**fields, start=start, end=end)


def ingest_and_validate(label, pair, frame, rate_limit_ms) -> list[tuple]:
    """Serve ``frame``, ingest ``[pair.start, pair.end)`` through ccxt, validate it."""
    from candlecast.data import ingestion as data
    from candlecast.data.exchanges import make_source
    from candlecast.testing.exchange_server import ExchangeServer
    from candlecast.timeframes import timeframe_ms

    now = int(frame["ts"].max()) + timeframe_ms(pair.timeframe)
    server = ExchangeServer({pair.symbol: frame}, timeframe=pair.timeframe, now_ms=now)
    with server:
        source = make_source(
            "binance", base_url=server.url, clock=server.clock_ms, rate_limit_ms=rate_limit_ms
        )
        seconds, result = timed(data.ingest, pair, pair.start, pair.end, source=source)
        requests = f"{server.count()} klines + {len(server.requests) - server.count()} other req"
    state = ge_state()
    v_seconds, report = timed(checked, data.validate, pair, pair.start, pair.end)
    return [
        (f"{label}: ingest (fetch+store)", seconds, result.rows, requests),
        (f"{label}: data.validate", v_seconds, report.rows, f"{verdict(report)}; GE {state}"),
    ]


def stage_hourly_year(args) -> list[tuple]:
    from candlecast.data.importers import read_history

    start, end = datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)
    pair = pair_for("BTC/USDT", "1h", start, end)
    return ingest_and_validate("1 1h year 2021", pair, read_history(BTC_HOURLY), args.rl)


def stage_minute_month(args) -> list[tuple]:
    frame = month_of_minutes(args.minute_days)
    first = datetime.fromtimestamp(frame["ts"].iloc[0] / 1000, UTC)
    start = first.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    pair = pair_for("UNITTEST/BTC", "1m", start, start + timedelta(days=args.minute_days))
    label = f"2 1m {args.minute_days} d"
    return ingest_and_validate(label, pair, frame, args.rl)


def stage_validation(args) -> list[tuple]:
    from candlecast.data.validation import validate_candles

    grid = minute_grid(args.rows)
    state = ge_state()
    first_s, report = timed(validate_candles, grid, "1m")
    repeats = [timed(validate_candles, grid, "1m")[0] for _ in range(args.repeat)]
    best = min(repeats)
    aim = best * AIM_ROWS / len(grid) < AIM_S
    scaled = "" if len(grid) == AIM_ROWS else f" (scaled from {len(grid)} rows)"
    met = f"aim {AIM_ROWS // 1000}k rows < {AIM_S:.0f} s: {'met' if aim else 'NOT met'}{scaled}"
    return [
        (
            f"3 validate_candles {len(grid)} 1m: first",
            first_s,
            len(grid),
            f"{verdict(report)}; GE {state}",
        ),
        (f"3 validate_candles: best of {args.repeat}", best, len(grid), met),
    ]


#: Times ``validate_candles`` in a fresh process on the code under ``sys.argv[1]``.
_TIMER = """
import json, runpy, sys, time
sys.path.insert(0, sys.argv[1])
bench = runpy.run_path(sys.argv[2])
from candlecast.data.validation import validate_candles
grid = bench["minute_grid"](int(sys.argv[3]))
if sys.argv[5] == "1":
    grid.loc[grid.index[::200], "open"] = 0.0
validate_candles(grid, "1m")
times = []
for _ in range(int(sys.argv[4])):
    started = time.perf_counter()
    report = validate_candles(grid, "1m")
    times.append(time.perf_counter() - started)
stored = len(report.batch) if report.success and report.batch is not None else 0
print(json.dumps([min(times), bool(report.success), stored]))
"""
PER_ROW_AIM = 1.5


def baseline_tree(rev: str, into: Path) -> Path:
    """``include/`` of git revision ``rev``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "include"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "include"


def time_validation(include: Path, rows: int, repeat: int, corrupt: bool) -> tuple:
    code = [sys.executable, "-c", _TIMER, str(include), __file__, str(rows), str(repeat)]
    out = subprocess.run([*code, "1" if corrupt else "0"], check=True, capture_output=True)
    return tuple(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def stage_per_row_cost(args) -> list[tuple]:
    rev = (
        args.baseline
        or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="candlecast-baseline-") as tmp:
        old = baseline_tree(rev, Path(tmp))
        for corrupt in (False, True):
            what = "0.5% impossible rows" if corrupt else "clean"
            base_s, base_ok, _ = time_validation(old, args.rows, args.repeat, corrupt)
            new_s, _, stored = time_validation(REPO / "include", args.rows, args.repeat, corrupt)
            ratio = new_s / base_s
            met = "met" if ratio <= PER_ROW_AIM else "NOT met"
            base_note = f"baseline {rev[:7]}: {'pass' if base_ok else 'batch refused'}"
            rows += [
                (f"4 batch ({rev[:7]}), {what}", base_s, args.rows, base_note),
                (
                    f"4 per row (this tree), {what}",
                    new_s,
                    args.rows,
                    f"{stored} stored; {ratio:.2f}x batch, aim <= {PER_ROW_AIM}x: {met}",
                ),
            ]
    return rows


STAGES = {
    "1": stage_hourly_year,
    "2": stage_minute_month,
    "3": stage_validation,
    "4": stage_per_row_cost,
}


def report(rows: list[tuple]) -> None:
    print(f"{'stage':<42} {'seconds':>8} {'rows':>8} {'rows/s':>10}  note")
    for label, seconds, count, note in rows:
        rate = count / seconds if seconds else float("nan")
        print(f"{label:<42} {seconds:8.2f} {count:8d} {rate:10,.0f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=AIM_ROWS, help="stage 3 batch size")
    parser.add_argument("--repeat", type=int, default=3, help="stage 3 timed repeats")
    parser.add_argument("--minute-days", type=int, default=30, help="stage 2 span in days")
    parser.add_argument("--rate-limit-ms", dest="rl", type=float, default=0.0)
    parser.add_argument("--stages", default="1,2,3,4", help="comma-separated subset of 1..4")
    parser.add_argument("--baseline", default=None, help="stage 4 git rev (default: merge-base)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="candlecast-bench-data-") as home:
        os.environ["CANDLECAST_HOME"] = home
        run(args)


def run(args) -> None:
    print(
        f"machine: {platform.machine()} {platform.system()}, os.cpu_count()={os.cpu_count()}, "
        f"Python {platform.python_version()}; throwaway home {os.environ['CANDLECAST_HOME']}"
    )
    print(
        f"ccxt binance -> local ExchangeServer over HTTP, enableRateLimit on with "
        f"rateLimit={args.rl:g} ms (local server: no throttle spacing), pages of 1000"
    )
    if "2" in args.stages:
        print(
            f"stage 2 data: the ~10 days of {MINUTE_FILE.name} repeated in 10-day blocks "
            "shifted in time (prices scaled per copy, real gaps kept); NOT real data past day 10"
        )
    rows, started = [], time.perf_counter()
    for key in args.stages.split(","):
        rows += STAGES[key.strip()](args)
    report(rows)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
