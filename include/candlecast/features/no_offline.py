"""An offline store for processes that only read the online store: the prediction service's
workers.

Feast builds the configured offline store's config class when a ``RepoConfig`` is created, so a
process that only ever calls ``get_online_features`` still imports the offline store's engine:
for DuckDB, the pipeline's store, that is DuckDB, Ibis and their dependencies (about 24 MB of a
worker's resident memory, measured with a read of the bundled stream's online row: 281 MB with
``duckdb``, 257 MB with this one). The worker's ``RepoConfig`` names this store instead
(:func:`candlecast.features.online.repo_config` with ``online_only=True``); its online store,
registry and feature views are the pipeline's, so what it reads is the same. Every offline
method is Feast's base class's, which raises ``NotImplementedError``.
"""

from __future__ import annotations

from typing import Literal

from feast.infra.offline_stores.offline_store import OfflineStore
from feast.repo_config import FeastConfigBaseModel


class NoOfflineStoreConfig(FeastConfigBaseModel):
    """Named by ``offline_store.type`` = :data:`candlecast.features.online.NO_OFFLINE_STORE`
    (Feast imports ``<type>Config`` from the type's module)."""

    type: Literal["candlecast.features.no_offline.NoOfflineStore"] = (
        "candlecast.features.no_offline.NoOfflineStore"
    )


class NoOfflineStore(OfflineStore):
    """No offline reads or writes: Feast's base class refuses each one."""
