"""Candle ingestion and validation for one stream and one interval.

``raw`` keeps candles exactly as the source gave them; ``validated`` only batches that passed
the expectation suite. Features are computed from ``validated`` alone, so nothing a failed
batch holds can reach the feature store.

Every write goes through :mod:`candlecast.data.integrity`: a batch that would change
validated candles is quarantined unless ``overwrite`` is asked for, and a candle that closes
after now (``now_ms``, default the real clock) is never stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data import integrity
from candlecast.data.checks import REPAIRS, CheckOptions, allowed_rows
from candlecast.data.gaps import Completeness, Gap, completeness, find_gaps
from candlecast.data.limits import check_reach
from candlecast.data.schema import CANDLE_COLUMNS, FLAGS
from candlecast.data.sources import (
    CandleSource,
    fetch_range,
    iter_pages,
    limit_of,
    present_of,
    source_for,
)
from candlecast.data.store import PartitionedTable, locked
from candlecast.data.validation import (
    ValidationReport,
    quarantine_batch,
    quarantine_rows,
    validate_candles,
)
from candlecast.errors import CandleValidationError, EmptyBatchError
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import (
    ms_to_datetime,
    timeframe_ms,
    to_ms,
    volatility_warmup_candles,
)

log = logging.getLogger(__name__)

#: Gaps asked for again per ingestion at most (the rest wait for the next run).
MAX_GAP_REFETCH = 20
#: The rule that refuses a candle closing after now (checked before the expectations).
FUTURE_RULE = "candle_closes_after_now"


@dataclass(frozen=True)
class IngestResult:
    """What an ingestion stored: ``rows`` fetched into ``files``, for the range
    ``[start_ms, end_ms)`` (with history: from the oldest raw candle not validated yet);
    fetching began at ``resumed_ms`` (after the candles of the range
    stored already, e.g. by a run that crashed); ``refetched`` gap ranges now filled."""

    rows: int
    files: list[str]
    start_ms: int
    end_ms: int
    refetched: list[tuple[int, int]] = field(default_factory=list)
    resumed_ms: int | None = None


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
    """How much history before an interval the features and the training window need (the
    volatility features' month-long windows included)."""
    step = timeframe_ms(pair.timeframe)
    warmup = max(pair.features.warmup_candles, volatility_warmup_candles(pair.timeframe))
    return int(pair.training.train_days * 86_400_000) + warmup * step


def ingest(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    source: CandleSource | None = None,
    settings: Settings | None = None,
    on_progress: Callable[[int], None] | None = None,
    with_history: bool = False,
    *,
    overwrite: bool = False,
    now_ms: int | None = None,
) -> IngestResult:
    """Fetch candles into the raw store, page by page, for ``[start, end)``.

    Incremental: when the newest stored candle is older than ``start`` the fetch begins right
    after it, so a missed run is caught up; within the range it begins after the candles
    stored already without a gap, so a run that crashed (or was killed) resumes where it
    stopped. A failure keeps every page stored before it. Known gaps before ``start`` are
    asked for again. ``on_progress`` gets the open time of the newest candle stored so far.
    With ``with_history``, an empty store first gets the history that features and the
    training window need before ``start`` (:func:`history_needed_ms`), and the result's
    range reaches back to raw candles of that history no validation has passed
    (:func:`validation_backlog_ms`), so that the validation after it covers them.

    A page that differs from validated candles raises :class:`~candlecast.data.integrity.
    OverlapConflictError` (kept in the quarantine) unless ``overwrite``: then the validated
    candles it replaces are set aside in the quarantine (for undo) and removed, so the new
    ones reach ``validated`` only by passing :func:`validate`.

    Raises:
        OverlapConflictError, FutureCandleError: see above; what was stored before stays.
        ExchangeUnavailableError: the source failed, or stopped giving candles before the
            range reaches the present (the message names where).
        HistoryLimitError: the range to fetch starts before the oldest candle the exchange
            serves (Kraken: the 720 most recent); the message names the first missing candle
            and the bulk file to import. Nothing is fetched.
    """
    source = source or source_for(pair)
    settings = settings or get_settings()
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
    resumed = _resume_point(table, first, last, step)
    if with_history:
        first = _with_backlog(pair, first, start, end, settings)
    limit = limit_of(source)
    if resumed < last:
        now = present_of(source, pair.symbol, pair.timeframe)
        check_reach(limit, pair.symbol, pair.timeframe, resumed, now, _import_command(pair))
    write = _PageWriter(pair, settings, overwrite, now_ms)
    rows, files = 0, set[str]()
    for page in iter_pages(source, pair.symbol, pair.timeframe, resumed, last):
        files.update(write(page))
        rows += len(page)
        if on_progress:
            on_progress(int(page["ts"].iloc[-1]))
    refetched = _refetch_gaps(pair, source, table, _lower_bound(pair, end), first, write)
    log.info("ingested %d %s candles into %d partitions", rows, pair.symbol, len(files))
    return IngestResult(rows, sorted(files), first, last, refetched, resumed)


def _with_backlog(
    pair: PairConfig, first: int, start: datetime, end: datetime, settings: Settings
) -> int:
    """``first``, or the oldest raw candle a killed or failed validation left unvalidated:
    the result's range starts there, so the validation and features after this ingestion
    cover it (the history fetch is decided on the raw store, so nothing else would)."""
    backlog = validation_backlog_ms(pair, start, end, settings)
    return first if backlog is None else min(first, backlog)


def _resume_point(table: PartitionedTable, first: int, last: int, step: int) -> int:
    """The open time after the candles of ``[first, last)`` stored without a gap from
    ``first`` on: where a fetch of the range has to begin."""
    grid = -(-first // step) * step
    keys = np.unique(table.keys(first, last))
    keys = keys[(keys >= grid) & (keys < last)]
    expected = grid + np.arange(len(keys), dtype=np.int64) * step
    contiguous = int(np.argmin(keys == expected)) if (keys != expected).any() else len(keys)
    return grid + contiguous * step


class _PageWriter:
    """Stores fetched pages into ``raw``, each checked against ``validated`` first."""

    def __init__(
        self, pair: PairConfig, settings: Settings, overwrite: bool, now_ms: int | None
    ) -> None:
        self.pair, self.settings, self.overwrite, self.now_ms = pair, settings, overwrite, now_ms
        self.raw = raw_table(pair.stream, settings)
        self.validated = validated_table(pair.stream, settings)

    def __call__(self, page: pd.DataFrame) -> list[str]:
        # Exact repeats (overlapping pages) are dropped; the store holds one row a key.
        page = page.drop_duplicates("ts", keep="last")
        batch_id = f"ingest-{ms_to_datetime(int(page['ts'].iloc[0])):%Y%m%dT%H%M}"
        folder = _quarantine_dir(self.pair, batch_id, self.settings)
        page, _ = split_future(self.pair, page, folder, self.now_ms)
        if page.empty:
            return []
        with locked(self.raw, self.validated):
            overlap = integrity.admit(
                page,
                self.validated,
                overwrite=self.overwrite,
                folder=folder,
                label=self.pair.stream.label,
                undo=_import_command(self.pair),
                compared=_repaired(page),
            )
            if overlap.conflicts:  # overwrite: the new rows must pass validation first
                self.validated.delete(overlap.changed["ts"])
            return [str(f) for f in self.raw.upsert(page[~page["ts"].isin(overlap.same)])]


def _repaired(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as validation would store it (the repair rules applied), for comparing."""
    for rule in REPAIRS.values():
        frame, _ = rule(frame)
    return frame


def _quarantine_dir(pair: PairConfig, batch_id: str, settings: Settings) -> Path:
    return pair.stream.candle_dir(settings.paths.quarantine) / batch_id


def _import_command(pair: PairConfig) -> str:
    """The command that imports a file into this stream (for undo notes)."""
    return (
        f"candlecast import-candles --pair {pair.symbol} --exchange {pair.exchange} "
        f"--timeframe {pair.timeframe}"
    )


def split_future(
    pair: PairConfig, batch: pd.DataFrame, folder: Path, now: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``batch`` without its candles that close after ``now`` (default: the real clock), and
    those candles (kept in ``folder``, ``future.parquet``) with the rule that refused them.

    Raises:
        FutureCandleError: all of the batch, or more than ``max_refused_share`` of it (and
            more than one candle), lies in the future: a wrong clock or a wrong file, kept
            whole in ``folder``; nothing is stored.
    """
    now = int(time.time() * 1000) if now is None else now
    ts = pd.to_numeric(batch["ts"], errors="coerce") if "ts" in batch else pd.Series([])
    late = (ts + timeframe_ms(pair.timeframe) > now).to_numpy()
    if not late.any():
        return batch, batch.iloc[0:0].assign(rule=pd.Series(dtype=object))
    ahead = integrity.future_candles(ts[late], pair.timeframe, now)
    message = integrity.future_message(pair.stream.label, ahead, pair.timeframe, now)
    if late.all() or late.sum() > allowed_rows(pair.data.max_refused_share, len(batch)):
        integrity.keep(folder, message, batch=batch)
        raise integrity.FutureCandleError(f"{message}; batch kept in {folder}")
    future = batch[late].assign(rule=FUTURE_RULE)
    integrity.keep(
        folder, message.replace("nothing was stored", "only these were refused"), future=future
    )
    log.warning("%s: refused %d candle(s) from the future", pair.stream.label, len(future))
    return batch[~late].reset_index(drop=True), future


def _lower_bound(pair: PairConfig, end: datetime) -> int:
    """Oldest candle ingestion looks after: the pair's start, else the history it needs."""
    return to_ms(pair.start) if pair.start else to_ms(end) - history_needed_ms(pair)


def stored_gaps(stream: Stream, settings: Settings | None = None, store: str = "raw") -> list[Gap]:
    """Gaps in a stream's stored candles (``raw`` or ``validated``)."""
    return find_gaps(_table(store, stream, settings).keys(), stream.timeframe)


def unvalidated_candles(
    stream: Stream,
    since_ms: int | None = None,
    before_ms: int | None = None,
    settings: Settings | None = None,
) -> np.ndarray:
    """Open times of raw candles in ``[since_ms, before_ms)`` that lie outside the span of
    the validated candles: stored by an ingestion whose validation never ran or never
    finished (a run killed in between, a disk that filled during the write). Candles inside
    the span that are not validated were refused by it (see ``quality.refused_candles``)."""
    validated = validated_table(stream, settings)
    first, last = validated.first_key(), validated.last_key()
    # only the raw partitions outside the validated span are read: a run pays for its edges,
    # not for the stream's whole history
    spans: list[tuple[int | None, int | None]] = [(since_ms, before_ms)]
    if first is not None and last is not None:
        spans = [(since_ms, first), (last + 1, before_ms)]
    raw = raw_table(stream, settings)
    found = [_keys_in(raw, a, b) for a, b in spans if a is None or b is None or a < b]
    return np.sort(np.concatenate(found)) if found else np.empty(0, np.int64)


def _keys_in(table: PartitionedTable, start_ms: int | None, end_ms: int | None) -> np.ndarray:
    keys = table.keys(start_ms, end_ms)
    if start_ms is not None:
        keys = keys[keys >= start_ms]
    return keys if end_ms is None else keys[keys < end_ms]


def validation_backlog_ms(
    pair: PairConfig, start: datetime, end: datetime, settings: Settings | None = None
) -> int | None:
    """The oldest raw candle of ``[start, end)`` and the history before it that no validation
    has passed yet (None: nothing waits): what a killed or failed first validation left."""
    step = timeframe_ms(pair.timeframe)
    history = (to_ms(start) - history_needed_ms(pair)) // step * step  # as ingest fetches it
    since = min(_lower_bound(pair, end), history)
    waiting = unvalidated_candles(pair.stream, since, to_ms(end), settings)
    return int(waiting[0]) if len(waiting) else None


def stored_completeness(
    stream: Stream, start: datetime, end: datetime, settings: Settings | None = None
) -> Completeness:
    """How complete the validated candles of ``[start, end)`` are."""
    keys = validated_table(stream, settings).keys(to_ms(start), to_ms(end))
    keys = keys[(keys >= to_ms(start)) & (keys < to_ms(end))]
    return completeness(keys, stream.timeframe, to_ms(start), to_ms(end))


def _refetch_gaps(
    pair: PairConfig,
    source: CandleSource,
    table: PartitionedTable,
    since: int,
    before: int,
    write: Callable[[pd.DataFrame], list[str]],
) -> list[tuple[int, int]]:
    """Ask the source again for candles missing before ``before``; returns the ranges
    (open times, end exclusive) it now had candles for."""
    filled = []
    oldest = limit_of(source).oldest_served_ms(
        pair.timeframe, present_of(source, pair.symbol, pair.timeframe)
    )
    gaps = find_gaps(table.keys(since, before), pair.timeframe)
    # a gap older than the exchange serves can only be filled by importing a bulk file
    gaps = [gap for gap in gaps if oldest is None or gap.start_ms >= oldest]
    for gap in gaps[:MAX_GAP_REFETCH]:
        frame = fetch_range(source, pair.symbol, pair.timeframe, gap.start_ms, gap.end_ms)
        if len(frame):
            write(frame)
            filled.append((gap.start_ms, gap.end_ms))
    return filled


def validate(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    settings: Settings | None = None,
    *,
    overwrite: bool = False,
    now_ms: int | None = None,
    docs: bool = True,
) -> ValidationReport:
    """Validate the raw candles of ``[start, end)``; promote them to the validated store.
    Without ``docs``, data docs are built only for a batch that fails.

    Raises:
        EmptyBatchError: the raw store has no candles for the interval.
        CandleValidationError: an expectation failed; the batch is quarantined.
        OverlapConflictError, FutureCandleError: see :func:`validate_frame`.
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
    report = validate_frame(
        pair, batch, batch_id, settings, options, overwrite=overwrite, now_ms=now_ms, docs=docs
    )
    report.completeness = completeness(_stored_ts(report), pair.timeframe, to_ms(start), to_ms(end))
    return report


def _stored_ts(report: ValidationReport) -> pd.Series:
    """Open times of the candles a report stored (refused ones count as missing)."""
    return report.batch["ts"] if report.batch is not None else pd.Series([], dtype="int64")


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
    pair: PairConfig,
    batch: pd.DataFrame,
    batch_id: str,
    settings: Settings | None = None,
    *,
    overwrite: bool = False,
    now_ms: int | None = None,
) -> ValidationReport:
    """Store a user's candle history the way ingestion stores a fetched batch: validated as
    read (impossible rows refused and kept in the quarantine, a failing file quarantined
    whole), then upserted into the raw and validated stores. Rows identical to stored ones
    are left as they are. The completeness counts refused rows as missing.

    Raises:
        FutureCandleError: a candle closes after ``now_ms`` (default now); nothing stored.
        CandleValidationError: an expectation failed; the batch is quarantined.
        OverlapConflictError: the batch differs from validated candles and ``overwrite`` is
            False; nothing stored. With ``overwrite`` the replaced candles are kept in the
            quarantine folder (``replaced.parquet``), and the report says how to undo.
    """
    settings = settings or get_settings()
    report = validate_frame(
        pair, batch, batch_id, settings, check_options(pair), overwrite=overwrite, now_ms=now_ms
    )
    repaired = report.batch if report.batch is not None else batch
    repaired = repaired.drop(columns=[FLAGS], errors="ignore")
    raw = raw_table(pair.stream, settings)
    with raw.lock():
        fresh = repaired[~repaired["ts"].isin(_unchanged_keys(raw, repaired))]
        _keep_replaced_raw(pair, raw, fresh, batch_id, settings)
        raw.upsert(fresh)
    ts = pd.to_numeric(batch["ts"], errors="coerce").dropna()
    step = timeframe_ms(pair.timeframe)
    span = (int(ts.min()), int(ts.max()) + step) if len(ts) else (None, None)
    report.completeness = completeness(repaired["ts"], pair.timeframe, *span)
    return report


def _unchanged_keys(table: PartitionedTable, batch: pd.DataFrame) -> np.ndarray:
    if batch.empty:
        return np.empty(0, np.int64)
    stored = table.read(int(batch["ts"].min()), int(batch["ts"].max()) + 1)
    return integrity.compare(batch, stored).same


def _keep_replaced_raw(
    pair: PairConfig,
    raw: PartitionedTable,
    fresh: pd.DataFrame,
    batch_id: str,
    settings: Settings,
) -> None:
    """Raw candles an import replaces (ones that never passed validation) are kept too."""
    if fresh.empty:
        return
    stored = raw.read(int(fresh["ts"].min()), int(fresh["ts"].max()) + 1)
    overlap = integrity.compare(fresh, stored)
    if overlap.conflicts:
        folder = _quarantine_dir(pair, batch_id, settings)
        note = f"{pair.stream.label}: replaced {overlap.conflicts} raw candles"
        folder.mkdir(parents=True, exist_ok=True)
        overlap.replaced.to_parquet(folder / "replaced_raw.parquet", index=False)
        log.warning("%s; kept in %s", note, folder / "replaced_raw.parquet")


def check_options(pair: PairConfig, as_of: datetime | None = None) -> CheckOptions:
    """The expectation bounds a pair's config sets, freshness judged at ``as_of``."""
    return CheckOptions(
        max_close_step=pair.data.max_close_step,
        max_volume_spike=pair.data.max_volume_spike,
        max_staleness_candles=pair.data.max_staleness_candles,
        as_of_ms=to_ms(as_of) if as_of else None,
        max_zero_run_hours=pair.data.max_zero_run_hours,
        max_refused_share=pair.data.max_refused_share,
        max_flagged_share=pair.data.max_flagged_share,
    )


def validate_frame(
    pair: PairConfig,
    batch: pd.DataFrame,
    batch_id: str,
    settings: Settings | None = None,
    options: CheckOptions | None = None,
    *,
    overwrite: bool = False,
    now_ms: int | None = None,
    docs: bool = True,
) -> ValidationReport:
    """Validate a candle batch; on success upsert it into the validated store: its rows
    but the refused ones (kept in the quarantine folder, ``refused.parquet``), oddities
    flagged in the ``flags`` column. Data docs are built for every batch, or with
    ``docs=False`` only for a batch that fails (the docs cost more than the checks: a
    sub-hourly stream's healthy candle skips them).

    Raises:
        FutureCandleError: a candle closes after ``now_ms`` (default now); batch quarantined.
        CandleValidationError: an expectation failed; the batch is quarantined.
        OverlapConflictError: the batch differs from validated candles and ``overwrite`` is
            False; batch and differences quarantined, nothing stored.
    """
    settings = settings or get_settings()
    folder = _quarantine_dir(pair, batch_id, settings)
    batch, future = split_future(pair, batch, folder, now_ms)
    options = options or check_options(pair)
    docs_dir = pair.stream.candle_dir(settings.paths.data_docs)
    key = pair.stream.key
    report = validate_candles(
        batch, pair.timeframe, options, docs_dir=docs_dir if docs else None, stream=key
    )
    if len(future):
        report.rows += len(future)
        report.refused = pd.concat([report.refused, future], ignore_index=True)
    if not report.success or report.batch is None:
        if not docs:  # the quarantine's summary links the failed validation's page
            report = validate_candles(batch, pair.timeframe, options, docs_dir=docs_dir, stream=key)
        quarantine_batch(batch, report, folder)
        raise CandleValidationError(report)
    quarantine_rows(report, folder)
    validated = validated_table(pair.stream, settings)
    with validated.lock():
        overlap = integrity.admit(
            report.batch,
            validated,
            overwrite=overwrite,
            folder=folder,
            label=pair.stream.label,
            undo=_import_command(pair),
        )
        validated.upsert(report.batch[~report.batch["ts"].isin(overlap.same)])
    report.unchanged, report.replaced = len(overlap.same), overlap.conflicts
    if overlap.kept_in is not None:
        report.undo = integrity.undo_note(overlap.kept_in, _import_command(pair))
    log.info("%s", report.summary())
    if report.refused_rows:  # news, unlike a clean batch (quiet when healthy)
        where = f"kept in {report.quarantine}" if report.quarantine else "see the report"
        log.warning("%s: %d candles refused (%s)", pair.stream.label, report.refused_rows, where)
    return report
