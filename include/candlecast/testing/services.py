"""The local PostgreSQL (trust auth) and Redis that integration tests run against
(``bash scripts/services.sh`` starts them): connection strings in each client's format,
autocommitted statements, flushed databases, free ports."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Services:
    """The shared PostgreSQL (trust auth) and Redis the stack's databases live in."""

    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    admin_database: str = "test"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379

    def postgres_url(self, database: str, scheme: str = "postgresql") -> str:
        host = f"{self.postgres_host}:{self.postgres_port}"
        return f"{scheme}://{self.postgres_user}@{host}/{database}"

    def redis_url(self, db: int) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/{db}"

    def feast_redis(self, db: int) -> str:
        """Feast's connection string (``host:port,db=N``), not a URL."""
        return f"{self.redis_host}:{self.redis_port},db={db}"

    def query(self, database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of one statement, autocommitted (``CREATE``/``DROP DATABASE`` need that)."""
        import psycopg2

        connection = psycopg2.connect(
            host=self.postgres_host,
            port=self.postgres_port,
            user=self.postgres_user,
            dbname=database,
            connect_timeout=30,
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql, args or None)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def flush_redis(self, db: int) -> None:
        import redis

        redis.Redis(host=self.redis_host, port=self.redis_port, db=db).flushdb()

    def check(self) -> None:
        """Raise naming what to start when PostgreSQL or Redis does not answer."""
        try:
            self.query(self.admin_database, "SELECT 1")
            self._ping_redis()
        except Exception as exc:
            raise RuntimeError(
                f"PostgreSQL {self.postgres_host}:{self.postgres_port} or Redis "
                f"{self.redis_host}:{self.redis_port} is not answering ({exc}); start them with "
                "bash scripts/services.sh"
            ) from exc

    def _ping_redis(self) -> None:
        import redis

        redis.Redis(host=self.redis_host, port=self.redis_port, socket_timeout=30).ping()
