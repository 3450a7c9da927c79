"""What a candle batch must satisfy: the expectation suite, the derived columns it reads,
and the repair rules for known, unambiguous source defects.

Derived columns are computed here in pandas (one vectorised pass) and checked by Great
Expectations like any column, so every finding is a named GE expectation in the report.

Each expectation carries a severity in its ``meta`` (:data:`SEVERITIES`):

* ``refuse``: an impossible row (a price that is not positive, high below low, open or close
  outside [low, high], a negative volume, a null, an off-grid or duplicate-conflicting time).
  Only the rows it finds are refused; the rest of the batch is stored.
* ``flag``: a statistical oddity (a close step, a volume spike, a long zero-volume run, a VWAP
  outside the candle). The rows are stored with a bit set in their ``flags`` column.
* ``batch``: a property of the whole batch (its columns and types, order, timeframe, share of
  zero volume, freshness): failing it refuses the batch whole.

Row expectations carry GE's ``mostly``: when more rows than ``max_refused_share`` (or
``max_flagged_share``) of the batch, and more than one, fail one, the expectation fails and
the batch is refused whole, so a file with swapped columns or of another timeframe is never
stored row by row (:func:`allowed_rows`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from candlecast.data.schema import CANDLE_COLUMNS, OPTIONAL_COLUMNS
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

GRID = "ts_grid_offset"  # ts modulo the timeframe: 0 on the grid
STEP = "close_step"  # |close / previous close - 1|
SPIKE = "volume_spike"  # volume / upper quartile of the previous traded candles' volumes
VWAP_EXCESS = "quote_vwap_excess"  # how far quote_volume / volume lies outside [low, high]
COARSE = "coarse_spacing"  # candles per step inside a run of equal multi-candle steps, else 0
ZERO_VOLUME = "zero_volume"  # 1 where volume is 0 (in batches of >= _ZERO_MIN_ROWS candles)
ZERO_RUN = "zero_volume_run"  # length (candles) of the zero-volume run a candle is in, else 0
DERIVED = [GRID, STEP, SPIKE, ZERO_VOLUME, ZERO_RUN, COARSE, VWAP_EXCESS]
REFUSE, FLAG, BATCH = "refuse", "flag", "batch"
SEVERITIES = (REFUSE, FLAG, BATCH)
#: The bit each statistical oddity sets in the stored ``flags`` column.
FLAG_BITS = {STEP: 1, SPIKE: 2, ZERO_RUN: 4, VWAP_EXCESS: 8}
_PRICES = ["open", "high", "low", "close"]
#: Spikes are judged against the volumes of the last traded candles only: on a thin market
#: most candles trade nothing, and a median over them is zero or dust, so any trade "spikes".
_SPIKE_WINDOW = 48
_SPIKE_MIN_TRADED = 12
_SPIKE_QUANTILE = 0.75
#: Equal steps of several candles in a row that mean another timeframe, not gaps: illiquid
#: real markets (the bundled 1m UNITTEST_BTC) show runs of 3 at most.
_COARSE_RUN = 6
#: Batches shorter than this are not judged on their share of zero-volume candles (one quiet
#: candle of an illiquid market is real).
_ZERO_MIN_ROWS = 12


@dataclass(frozen=True)
class CheckOptions:
    """Bounds of the expectations (per pair, from the pair config)."""

    max_close_step: float = 0.5
    max_volume_spike: float = 1000.0
    max_staleness_candles: int | None = None
    as_of_ms: int | None = None
    vwap_tolerance: float = 1e-3
    #: Largest share of zero-volume candles: beyond it the volumes are not data (a broken
    #: export, or a dead market nothing can be learnt from). A market quiet most of the time
    #: is real (stored, with a liquidity warning): only one trading in fewer than 1 candle of
    #: 20 is refused.
    max_zero_volume: float = 0.95
    #: A zero-volume run longer than this (hours) is flagged: a minute without trades is a
    #: fact of a thin market, a day without any is worth a look.
    max_zero_run_hours: float = 24.0
    #: Largest share of a batch one refusing expectation may find before the whole batch is
    #: refused (GE ``mostly`` = 1 - share): a few impossible rows are the market's, many are
    #: a broken file.
    max_refused_share: float = 0.01
    #: The same bound for one flagging expectation.
    max_flagged_share: float = 0.2


def derive(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The batch with the derived check columns appended (where their inputs exist).

    The statistics (steps, spikes, zero runs) are taken over the possible rows only, so an
    impossible row (refused anyway) does not make its neighbour look odd.
    """
    out = frame.reset_index(drop=True).copy()
    columns, step = set(out.columns), timeframe_ms(timeframe)
    numbers = {
        c: _num(out, c).to_numpy(dtype="float64") for c in [*_PRICES, "volume"] if c in columns
    }
    possible = _possible(numbers)
    if "ts" in columns:
        out[GRID] = pd.to_numeric(out["ts"], errors="coerce") % step
    if "close" in columns:
        out[STEP] = _over(possible, numbers["close"], _close_step)
    if "volume" in columns:
        volume = numbers["volume"]
        out[SPIKE] = _over(possible, volume, volume_spike)
        judged = len(out) >= _ZERO_MIN_ROWS
        out[ZERO_VOLUME] = ((volume == 0) & judged).astype("float64")
        out[ZERO_RUN] = _over(possible, volume, zero_runs)
    if "ts" in columns:
        out[COARSE] = coarse_spacing(_num(out, "ts"), step)
    if {"quote_volume", "volume", "low", "high", "close"} <= columns:
        base, low, high = _num(out, "volume"), _num(out, "low"), _num(out, "high")
        vwap = _num(out, "quote_volume") / base.where(base > 0)
        excess = np.maximum(low - vwap, vwap - high).clip(lower=0)
        out[VWAP_EXCESS] = (excess / _num(out, "close")).where(vwap.notna())
    # One consolidated block: GE copies the frame per metric, and a frame of column-by-column
    # blocks is re-merged on every copy (most of the time on large batches).
    return out.copy()


def _possible(numbers: dict[str, np.ndarray]) -> np.ndarray | None:
    """Which rows' prices and volume can be real (what the refusing expectations check);
    None when all can (or the columns to tell are missing)."""
    if not {*_PRICES, "volume"} <= set(numbers):
        return None
    o, h, low, c = (numbers[name] for name in _PRICES)
    with np.errstate(invalid="ignore"):
        ok = (low > 0) & (h >= np.maximum(o, c)) & (low <= np.minimum(o, c))
        ok &= numbers["volume"] >= 0
    return None if ok.all() else ok


def _over(possible: np.ndarray | None, values: np.ndarray, statistic: Any) -> np.ndarray:
    """``statistic`` of the possible rows' ``values``, NaN on the impossible rows."""
    if possible is None:
        return statistic(values)
    out = np.full(len(values), np.nan)
    out[possible] = statistic(values[possible])
    return out


def _close_step(close: np.ndarray) -> np.ndarray:
    previous = np.concatenate([[np.nan], close[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(close / previous - 1)


def volume_spike(volume: np.ndarray) -> np.ndarray:
    """Each traded candle's volume over the upper quartile of the volumes of the last
    :data:`_SPIKE_WINDOW` traded candles before it (NaN until :data:`_SPIKE_MIN_TRADED` of
    them); 0 for a candle without trades."""
    traded = volume > 0
    typical = np.full(len(volume), np.nan)
    window = (
        pd.Series(volume[traded]).shift(1).rolling(_SPIKE_WINDOW, min_periods=_SPIKE_MIN_TRADED)
    )
    typical[traded] = window.quantile(_SPIKE_QUANTILE).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(volume == 0, 0.0, volume / typical)


def zero_runs(volume: np.ndarray) -> np.ndarray:
    """For each candle without volume, how many candles its zero-volume run holds; else 0."""
    zero = volume == 0
    out = np.zeros(len(volume))
    if not zero.any():
        return out
    edges = np.diff(np.concatenate([[0], zero.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out[zero] = np.repeat(ends - starts, ends - starts)
    return out


def coarse_spacing(ts: pd.Series, step: int) -> pd.Series:
    """For each candle inside a run of at least ``_COARSE_RUN`` equal steps of several
    candles (candles of a higher timeframe, e.g. 4h rows in a 1h file), the step in candles;
    0 elsewhere. A gap is one odd step, so gaps are never flagged."""
    ratio = ts.diff() / step
    coarse = (ratio > 1) & (ratio == ratio.round())
    # runs of equal coarse ratios: a new run starts wherever the ratio changes
    run_id = (ratio != ratio.shift()).cumsum()
    length = coarse.groupby(run_id).transform("sum")
    flagged = coarse & (length >= _COARSE_RUN)
    return ratio.where(flagged, 0.0).fillna(0.0)


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as numbers (unparseable values become NaN; the dtype expectation reports them)."""
    return pd.to_numeric(frame[column], errors="coerce")


def expected_columns(frame: pd.DataFrame) -> list[str]:
    optional = [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    return [*CANDLE_COLUMNS, *optional]


def allowed_rows(share: float, rows: int) -> int:
    """How many rows of a batch of ``rows`` one rule may refuse or flag before the batch is
    refused whole: ``share`` of them, and at least one (one bad candle in a day's 24 is the
    market's, not a broken file)."""
    return max(1, int(share * rows))


def _mostly(share: float, rows: int) -> float:
    """GE's ``mostly`` that lets :func:`allowed_rows` rows fail (a hair lower, so that
    rounding never fails a batch at exactly the bound)."""
    return max(0.0, 1 - allowed_rows(share, rows) / max(rows, 1) - 1e-9)


def build_suite(timeframe: str, columns: list[str], options: CheckOptions, rows: int = 0) -> Any:
    """The expectation suite ``candles_<timeframe>`` for a batch of ``rows`` with these
    stored columns; each expectation's ``meta["severity"]`` says what its findings do (module
    docstring)."""
    import great_expectations as gx

    found = _batch_expectations(gx.expectations, timeframe, columns, options)
    for severity, share, expectations in (
        (REFUSE, options.max_refused_share, _refusing(gx.expectations, columns)),
        (FLAG, options.max_flagged_share, _flagging(gx.expectations, timeframe, columns, options)),
    ):
        mostly = _mostly(share, rows)
        found += [
            make(**kw, mostly=mostly, meta={"severity": severity}) for make, kw in expectations
        ]
    # given whole: add_expectation compares each one with every one before it (GE's suite is
    # set-like), 0.1 CPU-s of every candles run for expectations that are distinct by design
    return gx.ExpectationSuite(name=f"candles_{timeframe}", expectations=found)


def _batch_expectations(
    exp: Any, timeframe: str, columns: list[str], options: CheckOptions
) -> list[Any]:
    derived = [GRID, STEP, SPIKE, ZERO_VOLUME, ZERO_RUN, COARSE]
    derived += [VWAP_EXCESS] if "quote_volume" in columns else []
    meta = {"severity": BATCH}
    found = [
        exp.ExpectTableColumnsToMatchOrderedList(column_list=[*columns, *derived], meta=meta),
        exp.ExpectColumnValuesToBeOfType(column="ts", type_="int64", meta=meta),
        *(
            exp.ExpectColumnValuesToBeOfType(column=c, type_="float64", meta=meta)
            for c in columns[1:]
        ),
        exp.ExpectColumnValuesToBeIncreasing(column="ts", meta=meta),
        exp.ExpectColumnValuesToBeInSet(column=COARSE, value_set=[0], meta=meta),
        exp.ExpectColumnMeanToBeBetween(
            column=ZERO_VOLUME, max_value=options.max_zero_volume, meta=meta
        ),
    ]
    if options.max_staleness_candles is not None and options.as_of_ms is not None:
        oldest_fresh = options.as_of_ms - options.max_staleness_candles * timeframe_ms(timeframe)
        found.append(exp.ExpectColumnMaxToBeBetween(column="ts", min_value=oldest_fresh, meta=meta))
    return found


def _refusing(exp: Any, columns: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    """The expectations of impossible rows, as (class, arguments)."""
    between = exp.ExpectColumnValuesToBeBetween
    found: list[tuple[Any, dict[str, Any]]] = [
        (exp.ExpectColumnValuesToNotBeNull, {"column": c}) for c in CANDLE_COLUMNS
    ]
    found += [(between, {"column": c, "min_value": 0, "strict_min": True}) for c in _PRICES]
    pair = exp.ExpectColumnPairValuesAToBeGreaterThanB
    found += [
        (pair, {"column_A": a, "column_B": b, "or_equal": True})
        for a, b in [("high", "open"), ("high", "close"), ("open", "low"), ("close", "low")]
    ]
    volumes = ["volume", *(c for c in ("quote_volume", "trades") if c in columns)]
    found += [(between, {"column": c, "min_value": 0}) for c in volumes]
    found += [
        (exp.ExpectColumnValuesToBeUnique, {"column": "ts"}),
        (exp.ExpectColumnValuesToBeInSet, {"column": GRID, "value_set": [0]}),
    ]
    return found


def _flagging(
    exp: Any, timeframe: str, columns: list[str], options: CheckOptions
) -> list[tuple[Any, dict[str, Any]]]:
    """The expectations of statistical oddities, as (class, arguments)."""
    between = exp.ExpectColumnValuesToBeBetween
    run = max(1.0, options.max_zero_run_hours * 3_600_000 / timeframe_ms(timeframe))
    found: list[tuple[Any, dict[str, Any]]] = [
        (between, {"column": STEP, "max_value": options.max_close_step}),
        (between, {"column": SPIKE, "max_value": options.max_volume_spike}),
        (between, {"column": ZERO_RUN, "max_value": run}),
    ]
    if "quote_volume" in columns:
        found.append((between, {"column": VWAP_EXCESS, "max_value": options.vwap_tolerance}))
    return found


def repair_exact_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows that repeat an earlier row exactly (overlapping pages or files): one candle,
    said twice. Rows of one time with different values are left for validation to refuse."""
    if "ts" not in frame.columns:
        return frame, 0
    repeated = frame.duplicated(keep="first")
    count = int(repeated.sum())
    return (frame[~repeated].reset_index(drop=True), count) if count else (frame, 0)


def repair_swapped_volumes(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Swap ``volume`` and ``quote_volume`` where they are unambiguously swapped.

    A row counts as swapped when its VWAP (quote / base volume) lies outside the candle's
    price range but the swapped ratio lies inside it: a known defect of CryptoDataDownload
    files (the bundled BTC/USD hourly data until 2020-10). Returns the frame and the count.
    """
    if not {"quote_volume", "volume", "low", "high"} <= set(frame.columns):
        return frame, 0
    low, high = _num(frame, "low") * (1 - 1e-3), _num(frame, "high") * (1 + 1e-3)
    base, quote = _num(frame, "volume"), _num(frame, "quote_volume")
    vwap, flipped = quote / base.where(base > 0), base / quote.where(quote > 0)
    swapped = ~vwap.between(low, high) & flipped.between(low, high)
    count = int(swapped.sum())
    if count:
        frame = frame.copy()
        frame.loc[swapped, ["volume", "quote_volume"]] = frame.loc[
            swapped, ["quote_volume", "volume"]
        ].to_numpy()
        log.warning("repaired %d rows with swapped volume/quote_volume", count)
    return frame, count


#: Repair rules applied before the expectations, by name; each returns (frame, rows repaired).
REPAIRS = {
    "exact_duplicate_rows": repair_exact_duplicates,
    "swapped_volume_columns": repair_swapped_volumes,
}
