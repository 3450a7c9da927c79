"""The light half of the feature store: open the Feast store and read a stream's online row
or its offline rows, and nothing else.

The prediction service imports this module, not :mod:`.featurestore`, so its workers load
neither TA-Lib and the feature computation nor the data layer's ingestion code; definitions,
materialization and point-in-time joins stay in :mod:`.featurestore`, which re-exports these
names for the pipeline.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from candlecast.data.store import PartitionedTable
from candlecast.names import ENTITY, Stream, view_name
from candlecast.settings import REPO_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

PROJECT = "candlecast"
FEATURE_REPO = REPO_ROOT / "feature_repo"
#: The offline store of a process that only reads online rows (:mod:`.no_offline`).
NO_OFFLINE_STORE = "candlecast.features.no_offline.NoOfflineStore"


def import_feast() -> None:
    """Import Feast as candlecast uses it; call it before anything else here imports Feast (it
    is a no-op for a Feast already imported).

    * Without typeguard's run-time checks. Feast decorates its classes with
      ``@typeguard.typechecked``, which re-parses, rewrites and recompiles each decorated
      module's source when it is imported (3 of the 4 CPU-seconds ``import feast`` takes, in
      every process that reads or writes features) and type-checks every call after. Those
      checks are a development aid that typeguard itself skips under ``python -O``; candlecast
      turns them off the same way for Feast, the only library here that uses typeguard.
    * Without the warning filters Feast sets for the whole process when imported
      (``simplefilter("once", DeprecationWarning)`` and the same for RuntimeWarning, in front
      of every filter there is): they would show every library's deprecation warnings once in
      every command, service and task that touches features, filters the user set included.
    """
    import typeguard

    typeguard.typechecked = _unchecked
    with warnings.catch_warnings():  # restores the process's filters after Feast's import
        import feast  # noqa: F401


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """``typeguard.typechecked`` as ``python -O`` has it: the target unchanged (and, called
    with options only, a decorator that leaves its target unchanged)."""
    return _unchecked if target is None else target


def repo_config(
    settings: Settings | None = None,
    read_timeout_s: float | None = None,
    online_only: bool = False,
) -> Any:
    """The Feast RepoConfig for these settings; with ``read_timeout_s``, a Redis online store
    is read with that connect and read timeout and no retry (:func:`bounded_redis_url`). With
    ``online_only``, for processes that only read online rows, no offline store is configured
    (:mod:`.no_offline`: DuckDB and Ibis are not imported)."""
    import_feast()
    from feast.repo_config import RepoConfig

    settings = settings or get_settings()
    feast_dir = settings.paths.feast
    if settings.online_store == "redis":
        url = settings.redis_url
        if read_timeout_s is not None:
            url = bounded_redis_url(url, read_timeout_s)
        online: dict[str, Any] = {"type": "redis", "connection_string": url}
    else:
        online = {"type": "sqlite", "path": str(feast_dir / "online.db")}
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=str(feast_dir / "registry.db"),
        online_store=online,
        offline_store={"type": NO_OFFLINE_STORE if online_only else "duckdb"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )


def bounded_redis_url(url: str, timeout_s: float) -> str:
    """A Feast Redis connection string (``host:port,db=1,...``) whose reads give up after
    ``timeout_s``: redis-py waits forever on a hung server by default, and retries a refused
    connection three times with backoff (seconds per read). Timeouts the URL sets are kept;
    ``retry=null`` makes redis-py try once (the service's circuit breaker decides when to
    try again)."""
    given = {part.split("=", 1)[0] for part in url.split(",") if "=" in part}
    bounds = {
        "socket_connect_timeout": str(timeout_s),
        "socket_timeout": str(timeout_s),
        "retry": "null",
    }
    return ",".join([url, *(f"{k}={v}" for k, v in bounds.items() if k not in given)])


def feature_store(
    settings: Settings | None = None,
    read_timeout_s: float | None = None,
    online_only: bool = False,
) -> FeatureStore:
    """The Feast store; ``read_timeout_s`` bounds each online read (the service's setting:
    the pipeline's materialization keeps the client's defaults); ``online_only``: a store that
    reads online rows and nothing else (the service's workers, :func:`repo_config`)."""
    import_feast()
    from feast import FeatureStore

    settings = settings or get_settings()
    settings.paths.feast.mkdir(parents=True, exist_ok=True)
    config = repo_config(settings, read_timeout_s, online_only)
    return FeatureStore(config=config, repo_path=str(FEATURE_REPO))


def offline_table(stream: Stream, settings: Settings | None = None) -> PartitionedTable:
    """The stream's rows of the Feast offline source."""
    settings = settings or get_settings()
    return PartitionedTable(stream.feature_dir(settings.paths.features), key="candle_ts")


def online_features(store: FeatureStore, stream: Stream, columns: Sequence[str]) -> dict[str, Any]:
    """The latest online values of ``columns`` for one stream (None where absent)."""
    return online_row(store, stream.timeframe, stream.market_key, columns)


def online_row(
    store: FeatureStore, timeframe: str, market_key: str, columns: Sequence[str]
) -> dict[str, Any]:
    """The latest online values of ``columns`` of the entity ``market_key`` in the feature view
    of ``timeframe`` (None where absent): :func:`online_features` by the stream's two keys, for
    a process that is handed them rather than the stream."""
    refs = [f"{view_name(timeframe)}:{c}" for c in columns]
    rows = [{ENTITY: market_key}]
    response = store.get_online_features(features=refs, entity_rows=rows)
    return {k: v[0] for k, v in response.to_dict().items()}
