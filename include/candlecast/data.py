"""Candle ingestion and validation for one pair and one interval.

``raw`` keeps candles exactly as the source gave them; ``validated`` only batches that passed
the expectation suite. Features are computed from ``validated`` alone, so nothing a failed
batch holds can reach the feature store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from candlecast.checks import CheckOptions
from candlecast.config import PairConfig
from candlecast.settings import Settings, get_settings
from candlecast.sources import CandleSource, fetch_range, source_for
from candlecast.store import PartitionedTable
from candlecast.timeframes import to_ms
from candlecast.validation import (
    CandleValidationError,
    ValidationReport,
    quarantine_batch,
    validate_candles,
)

log = logging.getLogger(__name__)


class EmptyBatchError(RuntimeError):
    """The source returned no candles for an interval."""


@dataclass(frozen=True)
class IngestResult:
    rows: int
    files: list[str]


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
) -> IngestResult:
    """Fetch candles opening in ``[start, end)`` and upsert them into the raw store."""
    source = source or source_for(pair)
    frame = fetch_range(source, pair.symbol, pair.timeframe, to_ms(start), to_ms(end))
    if frame["ts"].duplicated().any():
        # Keep the batch as it came for validation to judge; the raw store holds one row a key.
        frame = frame.drop_duplicates("ts", keep="last")
    files = raw_table(pair, settings).upsert(frame)
    log.info("ingested %d %s candles into %d partitions", len(frame), pair.symbol, len(files))
    return IngestResult(len(frame), [str(f) for f in files])


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
    report = validate_candles(batch, pair.timeframe, options)
    if not report.success:
        folder = settings.paths.quarantine / pair.exchange / pair.slug / pair.timeframe / batch_id
        quarantine_batch(batch, report, folder)
        raise CandleValidationError(report)
    validated_table(pair, settings).upsert(report.batch)
    log.info("%s", report.summary())
    return report
