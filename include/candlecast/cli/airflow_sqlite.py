"""SQLite connections for the embedded Airflow's components, given to Airflow through
``[database] sql_alchemy_connect_args`` (:data:`CONNECT_ARGS`).

The components share one SQLite file in WAL mode, with a busy timeout (``?timeout=60`` in
the connection URL), so a writer waits for another's lock. SQLite does not wait, though, when
a transaction that has read tries to write while another connection holds the write lock or
has committed since that read: it fails at once with "database is locked", whatever the
timeout (waiting could deadlock, or the read would be stale). Python's sqlite3 opens its
transaction just before the first INSERT/UPDATE/DELETE, so a transaction starts by writing
and waits, except one that SQLAlchemy starts with a ``SAVEPOINT``: it reads first. Airflow
creates each run of a backfill that way, so a backfill created while the scheduler works
failed part-way (a 500 from the API server, some of its runs committed).

Here a transaction that starts with a ``SAVEPOINT`` begins with ``BEGIN IMMEDIATE``: it takes
the write lock first, waiting for it as any writer does. Nothing imports Airflow.
"""

from __future__ import annotations

import sqlite3
from typing import Any

#: The environment variable that names Airflow's connect arguments, and its value.
CONNECT_ARGS_VAR = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"
CONNECT_ARGS_PATH = f"{__name__}.CONNECT_ARGS"


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        if not self.connection.in_transaction and sql.lstrip()[:9].upper() == "SAVEPOINT":
            super().execute("BEGIN IMMEDIATE")
        return super().execute(sql, parameters)


class SavepointWritesFirst(sqlite3.Connection):
    """A connection whose transactions that start with a savepoint take the write lock first."""

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


#: ``sqlite3.connect`` arguments for the metadata DB (Airflow adds ``check_same_thread``).
CONNECT_ARGS: dict[str, Any] = {"factory": SavepointWritesFirst}
