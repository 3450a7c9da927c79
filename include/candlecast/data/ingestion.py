"""Candle ingestion and validation for one stream and one interval.

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

from candlecast.config import PairConfig
from candlecast.data.checks import CheckOptions
from candlecast.data.gaps import Completeness, Gap, completeness, find_gaps
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.data.sources import CandleSource, fetch_range, iter_pages, source_for
from candlecast.data.store import PartitionedTable
from candlecast.data.validation import ValidationReport, quarantine_batch, validate_candles
from candlecast.errors import CandleValidationError, EmptyBatchError
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import timeframe_ms, to_ms

log = logging.getLogger(__name__)

#: Gaps asked for again per ingestion at most (the rest wait for the next run).
MAX_GAP_REFETCH = 20


@dataclass(frozen=True)
class IngestResult:
    rows: int
    files: list[str]
    start_ms: int
    end_ms: int
    refetched: list[tuple[int, int]] = field(default_factory=list)


def _table(store: str, stream: Stream, settings: Settings | None) -> PartitionedTable:
    root = {"raw": "raw", "validated": "validated"}[store]
    return PartitionedTable(stream.candle_dir(getattr((settings or get_settings()).paths, root)))


def raw_table(stream: Stream, settings: Settings | None = None) -> PartitionedTable:
    """Candles as the source gave them."""
    return _table("raw", stream, settings)


def validated_table(stream: Stream, settings: Settings | None = None) -> PartitionedTable:
    """Candles that passed validation: the only input of features."""
    return _table("validated", stream, settings)


def history_needed_ms(pair: PairConfig) -> int:
    """How much history before an interval the features and the training window need."""
    step = timeframe_ms(pair.timeframe)
    return int(pair.training.train_days * 86_400_000) + pair.features.warmup_candles * step


def ingest(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    source: CandleSource | None = None,
    settings: Settings | None = None,
    on_progress: Callable[[int], None] | None = None,
    with_history: bool = False,
) -> IngestResult:
    """Fetch candles into the raw store, page by page, for ``[start, end)``.

    Incremental: when the newest stored candle is older than ``start`` the fetch begins right
    after it, so a missed run is caught up; a failure keeps every page stored before it, and
    the next run resumes from there. Known gaps before ``start`` are asked for again.
    ``on_progress`` gets the open time of the newest candle stored so far. With
    ``with_history``, an empty store first gets the history that features and the training
    window need before ``start`` (:func:`history_needed_ms`).
    """
    source = source or source_for(pair)
    table = raw_table(pair.stream, settings)
    step = timeframe_ms(pair.timeframe)
    first, last = to_ms(start), to_ms(end)
    newest = table.last_key()
    if newest is None and with_history:
        # A fresh store: fetch the history the features and the training window need too,
        # so the first run of a new stream can train.
        first = (first - history_needed_ms(pair)) // step * step
    elif newest is not None and _lower_bound(pair, end) <= newest + step < first:
        first = newest + step
    rows, files = 0, set[str]()
    for page in iter_pages(source, pair.symbol, pair.timeframe, first, last):
        # Exact repeats (overlapping pages) are dropped; the store holds one row a key.
        page = page.drop_duplicates("ts", keep="last")
        files.update(str(f) for f in table.upsert(page))
        rows += len(page)
        if on_progress:
            on_progress(int(page["ts"].iloc[-1]))
    refetched = _refetch_gaps(pair, source, table, _lower_bound(pair, end), first)
    log.info("ingested %d %s candles into %d partitions", rows, pair.symbol, len(files))
    return IngestResult(rows, sorted(files), first, last, refetched)


def _lower_bound(pair: PairConfig, end: datetime) -> int:
    """Oldest candle ingestion looks after: the pair's start, else the history it needs."""
    return to_ms(pair.start) if pair.start else to_ms(end) - history_needed_ms(pair)


def stored_gaps(stream: Stream, settings: Settings | None = None, store: str = "raw") -> list[Gap]:
    """Gaps in a stream's stored candles (``raw`` or ``validated``)."""
    return find_gaps(_table(store, stream, settings).keys(), stream.timeframe)


def stored_completeness(
    stream: Stream, start: datetime, end: datetime, settings: Settings | None = None
) -> Completeness:
    """How complete the validated candles of ``[start, end)`` are."""
    keys = validated_table(stream, settings).keys(to_ms(start), to_ms(end))
    keys = keys[(keys >= to_ms(start)) & (keys < to_ms(end))]
    return completeness(keys, stream.timeframe, to_ms(start), to_ms(end))


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
    batch = raw_table(pair.stream, settings).read(to_ms(start), to_ms(end))
    if batch.empty:
        raise EmptyBatchError(
            f"{pair.stream.label}: no candles stored for "
            f"{start.isoformat()} to {end.isoformat()}; run ingest for this interval first"
        )
    options = check_options(pair, as_of=end)
    batch_id = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    report = validate_frame(pair, batch, batch_id, settings, options)
    report.completeness = completeness(batch["ts"], pair.timeframe, to_ms(start), to_ms(end))
    return report


def derive_timeframes(
    pair: PairConfig, start: datetime, end: datetime, settings: Settings | None = None
) -> dict[str, int]:
    """Resample the validated native candles of ``[start, end)`` into each derived timeframe's
    validated store (whole buckets only; a bucket with a missing candle is left out)."""
    from candlecast.data.resample import resample

    settings = settings or get_settings()
    native = validated_table(pair.stream, settings)
    written = {}
    for timeframe in pair.data.derived_timeframes:
        step = timeframe_ms(timeframe)
        first = to_ms(start) // step * step
        last = -(-to_ms(end) // step) * step
        candles = native.read(first, last)
        higher = resample(candles[CANDLE_COLUMNS], pair.timeframe, timeframe)
        validated_table(pair.stream.at(timeframe), settings).upsert(higher)
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
    raw_table(pair.stream, settings).upsert(report.batch)
    ts = report.batch["ts"] if report.batch is not None else batch["ts"]
    report.completeness = completeness(ts, pair.timeframe)
    return report


def check_options(pair: PairConfig, as_of: datetime | None = None) -> CheckOptions:
    """The expectation bounds a pair's config sets, freshness judged at ``as_of``."""
    return CheckOptions(
        max_close_step=pair.data.max_close_step,
        max_volume_spike=pair.data.max_volume_spike,
        max_staleness_candles=pair.data.max_staleness_candles,
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
    docs = pair.stream.candle_dir(settings.paths.data_docs)
    report = validate_candles(batch, pair.timeframe, options, docs_dir=docs)
    if not report.success:
        folder = pair.stream.candle_dir(settings.paths.quarantine) / batch_id
        quarantine_batch(batch, report, folder)
        raise CandleValidationError(report)
    validated_table(pair.stream, settings).upsert(report.batch)
    log.info("%s", report.summary())
    return report
