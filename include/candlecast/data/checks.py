"""What a candle batch must satisfy: the expectation suite, the derived columns it reads,
and the repair rules for known, unambiguous source defects.

Derived columns are computed here in pandas (one vectorised pass) and checked by Great
Expectations like any column, so every finding is a named GE expectation in the report.
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
SPIKE = "volume_spike"  # volume / median volume of the previous candles
VWAP_EXCESS = "quote_vwap_excess"  # how far quote_volume / volume lies outside [low, high]
COARSE = "coarse_spacing"  # candles per step inside a run of equal multi-candle steps, else 0
ZERO_VOLUME = "zero_volume"  # 1 where volume is 0 (in batches of >= _ZERO_MIN_ROWS candles)
DERIVED = [GRID, STEP, SPIKE, ZERO_VOLUME, COARSE, VWAP_EXCESS]
_PRICES = ["open", "high", "low", "close"]
_SPIKE_WINDOW = 48
#: Equal steps of several candles in a row that mean another timeframe, not gaps: illiquid
#: real markets (the bundled 1m UNITTEST_BTC) show runs of 3 at most.
_COARSE_RUN = 6
#: Batches shorter than this are not judged on their share of zero-volume candles (one quiet
#: candle of an illiquid market is real).
_ZERO_MIN_ROWS = 12


@dataclass(frozen=True)
class CheckOptions:
    """Bounds of the statistical expectations (per pair, from the pair config)."""

    max_close_step: float = 0.5
    max_volume_spike: float = 1000.0
    max_staleness_candles: int | None = None
    as_of_ms: int | None = None
    vwap_tolerance: float = 1e-3
    #: Largest share of zero-volume candles: beyond it the volumes are not data (a broken
    #: export, or a dead market nothing can be learnt from).
    max_zero_volume: float = 0.5


def derive(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The batch with the derived check columns appended (where their inputs exist)."""
    out = frame.reset_index(drop=True).copy()
    columns = set(out.columns)
    if "ts" in columns:
        out[GRID] = pd.to_numeric(out["ts"], errors="coerce") % timeframe_ms(timeframe)
    if "close" in columns:
        close = _num(out, "close")
        out[STEP] = (close / close.shift(1) - 1).abs()
    if "volume" in columns:
        volume = _num(out, "volume")
        median = volume.shift(1).rolling(_SPIKE_WINDOW, min_periods=12).median()
        out[SPIKE] = volume / median.where(median > 0)
        judged = len(out) >= _ZERO_MIN_ROWS
        out[ZERO_VOLUME] = ((volume == 0) & judged).astype("float64")
    if "ts" in columns:
        out[COARSE] = coarse_spacing(_num(out, "ts"), timeframe_ms(timeframe))
    if {"quote_volume", "volume", "low", "high", "close"} <= columns:
        base, low, high = _num(out, "volume"), _num(out, "low"), _num(out, "high")
        vwap = _num(out, "quote_volume") / base.where(base > 0)
        excess = np.maximum(low - vwap, vwap - high).clip(lower=0)
        out[VWAP_EXCESS] = (excess / _num(out, "close")).where(vwap.notna())
    # One consolidated block: GE copies the frame per metric, and a frame of column-by-column
    # blocks is re-merged on every copy (most of the time on large batches).
    return out.copy()


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


def build_suite(timeframe: str, columns: list[str], options: CheckOptions) -> Any:
    """The expectation suite ``candles_<timeframe>`` for a batch with these stored columns."""
    import great_expectations as gx

    exp = gx.expectations
    suite = gx.ExpectationSuite(name=f"candles_{timeframe}")
    derived = [GRID, STEP, SPIKE, ZERO_VOLUME, COARSE]
    derived += [VWAP_EXCESS] if "quote_volume" in columns else []
    add = suite.add_expectation
    add(exp.ExpectTableColumnsToMatchOrderedList(column_list=[*columns, *derived]))
    add(exp.ExpectColumnValuesToBeOfType(column="ts", type_="int64"))
    for column in columns[1:]:
        add(exp.ExpectColumnValuesToBeOfType(column=column, type_="float64"))
    for column in CANDLE_COLUMNS:
        add(exp.ExpectColumnValuesToNotBeNull(column=column))
    for column in _PRICES:
        add(exp.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    for upper, lower in [("high", "open"), ("high", "close"), ("open", "low"), ("close", "low")]:
        add(
            exp.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=upper, column_B=lower, or_equal=True
            )
        )
    add(exp.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    add(exp.ExpectColumnValuesToBeUnique(column="ts"))
    add(exp.ExpectColumnValuesToBeIncreasing(column="ts", strictly=True))
    add(exp.ExpectColumnValuesToBeInSet(column=GRID, value_set=[0]))
    add(exp.ExpectColumnValuesToBeBetween(column=STEP, max_value=options.max_close_step))
    add(exp.ExpectColumnValuesToBeBetween(column=SPIKE, max_value=options.max_volume_spike))
    add(exp.ExpectColumnValuesToBeInSet(column=COARSE, value_set=[0]))
    add(exp.ExpectColumnMeanToBeBetween(column=ZERO_VOLUME, max_value=options.max_zero_volume))
    if "quote_volume" in columns:
        add(exp.ExpectColumnValuesToBeBetween(column="quote_volume", min_value=0))
        add(exp.ExpectColumnValuesToBeBetween(column=VWAP_EXCESS, max_value=options.vwap_tolerance))
    if options.max_staleness_candles is not None and options.as_of_ms is not None:
        oldest_fresh = options.as_of_ms - options.max_staleness_candles * timeframe_ms(timeframe)
        add(exp.ExpectColumnMaxToBeBetween(column="ts", min_value=oldest_fresh))
    return suite


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
REPAIRS = {"swapped_volume_columns": repair_swapped_volumes}
