"""The Feast feature store: definitions, offline source, materialization, retrieval.

One feature view per timeframe (``candle_features_1h``) keyed by the ``market`` entity
(``binance:BTC/USDT``; a stream is a market at a timeframe, so a stream's rows are its market's
rows in its timeframe's view), fed by a partitioned parquet offline source under the data
directory. The online store is SQLite by default and Redis in production
(``CANDLECAST_ONLINE_STORE``).

Opening the store and reading rows live in :mod:`.online` (what the prediction service
imports) and are re-exported here, where the pipeline finds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.quality import usable_candles
from candlecast.errors import MissingDataError
from candlecast.features.engineering import ENTITY, MULTI_TIMEFRAME_COLUMNS, compute_features
from candlecast.features.online import (
    PROJECT,
    feature_store,
    import_feast,
    offline_table,
    online_features,
)
from candlecast.features.online import repo_config as repo_config
from candlecast.names import feature_service_name, view_name
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import timeframe_delta, timeframe_ms, to_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Definitions:
    entity: Any
    sources: list[Any]
    views: list[Any]
    services: list[Any]

    @property
    def objects(self) -> list[Any]:
        return [self.entity, *self.sources, *self.views, *self.services]


def definitions(timeframes: Sequence[str], settings: Settings | None = None) -> Definitions:
    """The Feast objects for the given timeframes (declarative; nothing is applied)."""
    import_feast()
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float32, Float64, Int64

    settings = settings or get_settings()
    tags = {"team": "candlecast"}
    market = Entity(
        name=ENTITY,
        join_keys=[ENTITY],
        value_type=ValueType.STRING,
        description="A symbol on its exchange (binance:BTC/USDT); one view per timeframe.",
        tags=tags,
    )
    sources, views, services = [], [], []
    for timeframe in sorted(set(timeframes)):
        source = FileSource(
            name=f"{view_name(timeframe)}_source",
            path=str(settings.paths.features / timeframe / "*" / "*" / "*.parquet"),
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            description=f"Candle features at {timeframe}, one row per closed candle.",
            tags=tags,
        )
        schema = [Field(name=c, dtype=Float32) for c in MULTI_TIMEFRAME_COLUMNS]
        schema += [Field(name="close", dtype=Float64)]
        view = FeatureView(
            name=view_name(timeframe),
            entities=[market],
            ttl=max(timeframe_delta(timeframe) * 48, timedelta(days=2)),
            schema=[*schema, Field(name="candle_ts", dtype=Int64)],
            source=source,
            online=True,
            description=f"Technical features of {timeframe} candles, known at candle close.",
            tags=tags,
        )
        service = FeatureService(
            name=feature_service_name(timeframe),
            features=[view],
            description=f"Inputs of the next-candle forecasters at {timeframe}.",
            tags=tags,
        )
        sources.append(source)
        views.append(view)
        services.append(service)
    return Definitions(market, sources, views, services)


def ensure_applied(timeframes: Sequence[str], settings: Settings | None = None) -> bool:
    """``feast apply`` the definitions, only when they differ from what was applied last.

    Returns True when an apply happened.
    """
    settings = settings or get_settings()
    defs = definitions(timeframes, settings)
    digest = hashlib.sha256()
    for obj in defs.objects:
        digest.update(_without_timestamps(obj.to_proto()).SerializeToString(deterministic=True))
    fingerprint = digest.hexdigest()
    stamp = settings.paths.feast / "applied.sha256"
    with _lock(settings):
        registry = settings.paths.feast / "registry.db"
        applied = registry.exists() and stamp.exists() and stamp.read_text() == fingerprint
        if applied and _online_tables_present(settings, defs):
            return False
        feature_store(settings).apply(defs.objects)
        stamp.write_text(fingerprint)
    log.info("applied Feast definitions for %s", ", ".join(sorted(set(timeframes))))
    return True


def _online_tables_present(settings: Settings, defs: Definitions) -> bool:
    """Whether the SQLite online store holds a table per feature view (a deleted or replaced
    ``online.db`` is re-created by applying again, whatever the stamp says). Redis keeps no
    tables: always True there."""
    if settings.online_store == "redis":
        return True
    path = settings.paths.feast / "online.db"
    if not path.exists():
        return False
    import sqlite3

    views = {view.name for view in defs.views}
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return False
    return all(f"{PROJECT}_{view}" in tables for view in views)


def write_features(
    pair: PairConfig, start: datetime, end: datetime, settings: Settings | None = None
) -> int:
    """Compute features for candles opening in ``[start, end)`` into the offline source.

    Reads enough validated history before ``start`` to warm the indicators up.
    Returns the number of feature rows written.

    Raises:
        MissingDataError: no feature row could be computed for the interval.
    """
    settings = settings or get_settings()
    stream = pair.stream
    first, last = to_ms(start), to_ms(end)
    warmup = pair.features.warmup_candles * timeframe_ms(pair.timeframe)
    candles = usable_candles(pair, validated_table(stream, settings).read(first - warmup, last))
    rows = compute_features(candles, pair.timeframe, stream.market_key) if len(candles) else candles
    if len(rows):
        rows = rows[(rows["candle_ts"] >= first) & (rows["candle_ts"] < last)]
    if rows.empty:
        raise MissingDataError(
            f"{stream.label}: no feature rows for {start.isoformat()} to {end.isoformat()} "
            f"({len(candles)} validated candles incl. {pair.features.warmup_candles} of "
            "warm-up); ingest and validate this interval and the warm-up before it first"
        )
    offline_table(stream, settings).upsert(rows)
    return len(rows)


@dataclass(frozen=True)
class Materialized:
    """What materialization did: the view, whether it wrote, the online row's candle."""

    feature_view: str
    written: bool
    online_candle_ts: int


def materialize(
    pair: PairConfig, start: datetime, end: datetime, settings: Settings | None = None
) -> Materialized:
    """Load the pair's newest feature row of ``[start, end)`` into the online store.

    Only this pair's rows are written (``FeatureStore.materialize`` works on a whole view,
    across pairs whose DAGs run independently), and never over newer online values: a
    backfill of an old interval must not make serving stale. Returns what was done.
    """
    settings = settings or get_settings()
    stream = pair.stream
    rows = offline_table(stream, settings).read(to_ms(start), to_ms(end))
    if rows.empty:
        raise MissingDataError(f"{stream.label}: no offline features for {start} to {end}")
    latest = rows.tail(1)
    store = feature_store(settings)
    online = online_features(store, stream, ["candle_ts"])["candle_ts"]
    candle_ts = int(latest["candle_ts"].iloc[0])
    if online is not None and int(online) >= candle_ts:
        return Materialized(view_name(stream.timeframe), False, int(online))
    store.write_to_online_store(view_name(stream.timeframe), latest)
    return Materialized(view_name(stream.timeframe), True, candle_ts)


def historical_features(
    entity_df: pd.DataFrame, timeframe: str, settings: Settings | None = None
) -> pd.DataFrame:
    """Point-in-time join of the feature service onto ``entity_df`` (market,
    event_timestamp)."""
    store = feature_store(settings)
    service = store.get_feature_service(feature_service_name(timeframe))
    with warnings.catch_warnings():
        # ibis (Feast's offline store) calls DuckDB's deprecated fetch_arrow_table(): a
        # DeprecationWarning in every training_set task's log, about neither of us
        warnings.filterwarnings(
            "ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning
        )
        return store.get_historical_features(entity_df=entity_df, features=service).to_df()


def _without_timestamps(message: Any) -> Any:
    """The proto with creation/update bookkeeping cleared (recursively), for fingerprinting."""
    for descriptor, value in message.ListFields():
        if descriptor.name in ("meta", "created_timestamp", "last_updated_timestamp"):
            message.ClearField(descriptor.name)
        elif descriptor.message_type is not None:
            if descriptor.is_repeated:
                if not descriptor.message_type.GetOptions().map_entry:
                    for item in value:
                        _without_timestamps(item)
            else:
                _without_timestamps(value)
    return message


@contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    settings.paths.feast.mkdir(parents=True, exist_ok=True)
    with (settings.paths.feast / ".apply.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
