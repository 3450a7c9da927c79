"""Candle ingestion and validation for one pair and one interval.

``raw`` keeps candles exactly as the source gave them; ``validated`` only batches that passed
the expectation suite. Features are computed from ``validated`` alone, so nothing a failed
batch holds can reach the feature store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from candlecast.checks import CheckOptions
from candlecast.config import PairConfig
from candlecast.gaps import Gap, find_gaps
from candlecast.settings import Settings, get_settings
from candlecast.sources import CANDLE_COLUMNS, CandleSource, fetch_range, iter_pages, source_for
from candlecast.store import PartitionedTable
from candlecast.timeframes import timeframe_ms, to_ms
from candlecast.validation import (
    CandleValidationError,
    ValidationReport,
    quarantine_batch,
    validate_candles,
)

log = logging.getLogger(__name__)

#: Gaps asked for again per ingestion at most (the rest wait for the next run).
MAX_GAP_REFETCH = 20


class EmptyBatchError(RuntimeError):
    """The source returned no candles for an interval."""


@dataclass(frozen=True)
class IngestResult:
    rows: int
    files: list[str]
    start_ms: int
    end_ms: int
    refetched: list[tuple[int, int]] = field(default_factory=list)


def _table(root: str, pair: PairConfig, settings: Settings | None) -> PartitionedTable:
    settings = settings or get_settings()
    base = getattr(settings.paths, root)
    return PartitionedTable(base / pair.exchange / pair.slug / pair.timeframe)


def raw_table(pair: PairConfig, settings: Settings | None = None) -> PartitionedTable:
    return _table("raw", pair, settings)


def validated_table(pair: PairConfig, settings: Settings | None = None) -> PartitionedTable:
    return _table("validated", pair, settings)


def ingest(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    source: CandleSource | None = None,
    settings: Settings | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Fetch candles into the raw store, page by page, for ``[start, end)``.

    Incremental: when the newest stored candle is older than ``start`` the fetch begins right
    after it, so a missed run is caught up; a failure keeps every page stored before it, and
    the next run resumes from there. Known gaps before ``start`` are asked for again.
    ``on_progress`` gets the open time of the newest candle stored so far.
    """
    source = source or source_for(pair)
    table = raw_table(pair, settings)
    step = timeframe_ms(pair.timeframe)
    first, last = to_ms(start), to_ms(end)
    newest = table.last_key()
    if newest is not None and to_ms(pair.start) <= newest + step < first:
        first = newest + step
    rows, files = 0, set()
    for page in iter_pages(source, pair.symbol, pair.timeframe, first, last):
        # Exact repeats (overlapping pages) are dropped; the store holds one row a key.
        page = page.drop_duplicates("ts", keep="last")
        files.update(str(f) for f in table.upsert(page))
        rows += len(page)
        if on_progress:
            on_progress(int(page["ts"].iloc[-1]))
    refetched = _refetch_gaps(pair, source, table, to_ms(pair.start), first)
    log.info("ingested %d %s candles into %d partitions", rows, pair.symbol, len(files))
    return IngestResult(rows, sorted(files), first, last, refetched)


def stored_gaps(
    pair: PairConfig, settings: Settings | None = None, store: str = "raw"
) -> list[Gap]:
    """Gaps in a pair's stored candles (``raw`` or ``validated``)."""
    return find_gaps(_table(store, pair, settings).keys(), pair.timeframe)


def _refetch_gaps(
    pair: PairConfig, source: CandleSource, table: PartitionedTable, since: int, before: int
) -> list[tuple[int, int]]:
    """Ask the source again for candles missing before ``before``; returns the ranges
    (open times, end exclusive) it now had candles for."""
    filled = []
    for gap in find_gaps(table.keys(since, before), pair.timeframe)[:MAX_GAP_REFETCH]:
        frame = fetch_range(source, pair.symbol, pair.timeframe, gap.start_ms, gap.end_ms)
        if len(frame):
            table.upsert(frame.drop_duplicates("ts", keep="last"))
            filled.append((gap.start_ms, gap.end_ms))
    return filled


def validate(
    pair: PairConfig, start: datetime, end: datetime, settings: Settings | None = None
) -> ValidationReport:
    """Validate the raw candles of ``[start, end)``; promote them to the validated store.

    Raises:
        EmptyBatchError: the raw store has no candles for the interval.
        CandleValidationError: an expectation failed; the batch is quarantined.
    """
    settings = settings or get_settings()
    batch = raw_table(pair, settings).read(to_ms(start), to_ms(end))
    if batch.empty:
        raise EmptyBatchError(
            f"{pair.symbol} {pair.timeframe}: no candles stored for "
            f"{start.isoformat()} to {end.isoformat()}; run ingest for this interval first"
        )
    options = check_options(pair, as_of=end)
    batch_id = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    return validate_frame(pair, batch, batch_id, settings, options)


def derive_timeframes(
    pair: PairConfig, start: datetime, end: datetime, settings: Settings | None = None
) -> dict[str, int]:
    """Resample the validated native candles of ``[start, end)`` into each derived timeframe's
    validated store (whole buckets only; a bucket with a missing candle is left out)."""
    from candlecast.resample import resample

    settings = settings or get_settings()
    native = validated_table(pair, settings)
    written = {}
    for timeframe in pair.derived_timeframes:
        step = timeframe_ms(timeframe)
        first = to_ms(start) // step * step
        last = -(-to_ms(end) // step) * step
        candles = native.read(first, last)
        higher = resample(candles[CANDLE_COLUMNS], pair.timeframe, timeframe)
        target = pair.model_copy(update={"timeframe": timeframe, "derived_timeframes": []})
        validated_table(target, settings).upsert(higher)
        written[timeframe] = len(higher)
    return written


def import_history(
    pair: PairConfig, batch: pd.DataFrame, batch_id: str, settings: Settings | None = None
) -> ValidationReport:
    """Store a user's candle history the way ingestion stores a fetched batch: validated as
    read (a failing file is quarantined whole), then upserted into the raw and validated
    stores."""
    settings = settings or get_settings()
    report = validate_frame(pair, batch, batch_id, settings, check_options(pair))
    raw_table(pair, settings).upsert(report.batch)
    return report


def check_options(pair: PairConfig, as_of: datetime | None = None) -> CheckOptions:
    """The expectation bounds a pair's config sets, freshness judged at ``as_of``."""
    return CheckOptions(
        max_close_step=pair.max_close_step,
        max_volume_spike=pair.max_volume_spike,
        max_staleness_candles=pair.max_staleness_candles,
        as_of_ms=to_ms(as_of) if as_of else None,
    )


def validate_frame(
    pair: PairConfig,
    batch: pd.DataFrame,
    batch_id: str,
    settings: Settings | None = None,
    options: CheckOptions | None = None,
) -> ValidationReport:
    """Validate a candle batch; on success upsert it into the validated store."""
    settings = settings or get_settings()
    docs = settings.paths.data_docs / pair.exchange / pair.slug / pair.timeframe
    report = validate_candles(batch, pair.timeframe, options, docs_dir=docs)
    if not report.success:
        folder = settings.paths.quarantine / pair.exchange / pair.slug / pair.timeframe / batch_id
        quarantine_batch(batch, report, folder)
        raise CandleValidationError(report)
    validated_table(pair, settings).upsert(report.batch)
    log.info("%s", report.summary())
    return report
