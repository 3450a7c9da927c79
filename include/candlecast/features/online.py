"""The light half of the feature store: open the Feast store and read a stream's online row
or its offline rows, and nothing else.

The prediction service imports this module, not :mod:`.featurestore`, so its workers load
neither TA-Lib and the feature computation nor the data layer's ingestion code; definitions,
materialization and point-in-time joins stay in :mod:`.featurestore`, which re-exports these
names for the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from candlecast.data.store import PartitionedTable
from candlecast.names import ENTITY, Stream, view_name
from candlecast.settings import REPO_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

PROJECT = "candlecast"
FEATURE_REPO = REPO_ROOT / "feature_repo"


def repo_config(settings: Settings | None = None) -> Any:
    """The Feast RepoConfig for these settings."""
    from feast.repo_config import RepoConfig

    settings = settings or get_settings()
    feast_dir = settings.paths.feast
    if settings.online_store == "redis":
        online: dict[str, Any] = {"type": "redis", "connection_string": settings.redis_url}
    else:
        online = {"type": "sqlite", "path": str(feast_dir / "online.db")}
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=str(feast_dir / "registry.db"),
        online_store=online,
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )


def feature_store(settings: Settings | None = None) -> FeatureStore:
    from feast import FeatureStore

    settings = settings or get_settings()
    settings.paths.feast.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings), repo_path=str(FEATURE_REPO))


def offline_table(stream: Stream, settings: Settings | None = None) -> PartitionedTable:
    """The stream's rows of the Feast offline source."""
    settings = settings or get_settings()
    return PartitionedTable(stream.feature_dir(settings.paths.features), key="candle_ts")


def online_features(store: FeatureStore, stream: Stream, columns: Sequence[str]) -> dict[str, Any]:
    """The latest online values of ``columns`` for one stream (None where absent)."""
    refs = [f"{view_name(stream.timeframe)}:{c}" for c in columns]
    rows = [{ENTITY: stream.market_key}]
    response = store.get_online_features(features=refs, entity_rows=rows)
    return {k: v[0] for k, v in response.to_dict().items()}
