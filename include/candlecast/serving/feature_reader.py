"""Where a serving worker's online features come from: Feast, in this process or in the
service's feature reader process.

Feast, with what it imports (pandas' and pyarrow's whole surface, SQLAlchemy, the clients of
every online store it supports), is about 65 MB of every process that opens a store (issue 18
measured a worker at 250 MB after reading one row, 184 MB before Feast). The prediction service
therefore opens Feast once, in a process of its own (``serving/service.py``'s
``OnlineFeatures``, a BentoML dependency that ``bentoml serve`` starts beside the workers), and
its workers ask that process for a stream's online row (:class:`RemoteReader`): the rows are
still read through Feast, never from its storage format, and the workers hold no Feast.
Everything else (tests, the CLI, a forecaster built in-process) reads Feast directly
(:func:`feast_reader`).

A reader is ``read(stream, columns) -> {column: value}``; a failed read raises, and the
forecaster's circuit breaker decides what to do about it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from candlecast.names import Stream
from candlecast.serving.breaker import RemoteStoreError
from candlecast.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

#: A stream's latest online values of the columns (None where absent).
OnlineReader = Callable[[Stream, Sequence[str]], dict[str, Any]]


@dataclass(frozen=True)
class DependencyAddress:
    """Where ``bentoml serve`` put a BentoML dependency (a worker's ``BENTOML_RUNNER_MAP``
    value): a TCP port (``netloc`` is its ``host:port`` as given) or a Unix socket's path."""

    netloc: str | None = None
    port: int | None = None
    socket: str | None = None


def parse_address(url: str) -> DependencyAddress:
    """``tcp://host:port`` or ``file:///path`` (the path %-quoted) as a :class:`DependencyAddress`.

    Raises:
        ValueError: another scheme, or a port that is not a number.
    """
    parsed = urlparse(url)
    if parsed.scheme == "tcp":
        return DependencyAddress(netloc=parsed.netloc, port=parsed.port)
    if parsed.scheme == "file":
        return DependencyAddress(socket=unquote(parsed.path))
    raise ValueError(f"not a BentoML dependency address (tcp:// or file://): {url!r}")


@runtime_checkable
class FactsReader(Protocol):
    """A reader that can also report on the process it reads through (:class:`RemoteReader`);
    a reader that reads Feast in this process (:func:`feast_reader`) has nothing to report."""

    def facts(self) -> dict[str, Any]:
        """The reading process's facts (pid, resident bytes, libraries), or why not."""
        ...


class OnlineReadError(RemoteStoreError):
    """The feature reader process could not read the online store (its error, verbatim), or
    could not be reached."""


def _online_store(settings: Settings, read_timeout_s: float) -> FeatureStore:
    """Feast opened in this process for online rows only, each read bounded by
    ``read_timeout_s`` (imported here, so a module that never opens it holds no Feast)."""
    from candlecast.features import online as featurestore

    return featurestore.feature_store(settings, read_timeout_s=read_timeout_s, online_only=True)


def feast_reader(settings: Settings, read_timeout_s: float) -> OnlineReader:
    """A reader with Feast opened in this process (online rows only, each read bounded by
    ``read_timeout_s``)."""
    from candlecast.features import online as featurestore

    store = _online_store(settings, read_timeout_s)

    def read(stream: Stream, columns: Sequence[str]) -> dict[str, Any]:
        return featurestore.online_features(store, stream, columns)

    return read


class OnlineRows:
    """The feature reader process's side: Feast opened once, rows read by the stream's keys.

    The answer is JSON text (NaN kept as NaN, as Feast returns it: a JSON body's null would
    read as an absent value). A failure is an answer (``error``, one line), not an exception,
    so the worker that asked sees the store's own error rather than a remote call's generic
    one; the worker logs where an outage starts and ends, so this side logs nothing per read."""

    def __init__(self, settings: Settings, read_timeout_s: float) -> None:
        from candlecast.features import online as featurestore

        self._featurestore = featurestore
        self._store = _online_store(settings, read_timeout_s)

    def read(self, timeframe: str, market_key: str, columns: Sequence[str]) -> str:
        """``{"values": {column: value}, "error": null}`` or ``{"values": null, "error": why}``."""
        try:
            values = self._featurestore.online_row(self._store, timeframe, market_key, columns)
        except Exception as exc:  # any store failure goes back to the worker, named
            return json.dumps({"values": None, "error": f"{type(exc).__name__}: {exc}"})
        return json.dumps({"values": values, "error": None})


class RemoteReader:
    """A worker's reader that asks the feature reader process over HTTP (its BentoML API:
    ``POST /online``, ``POST /facts``, ``GET /readyz``), from any thread, each call bounded by
    ``timeout_s``. ``url`` is the address ``bentoml serve`` gave the process (see
    :func:`parse_address`)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import httpx

        address = parse_address(url)
        if address.socket is not None:
            transport = httpx.HTTPTransport(uds=address.socket)
            self._client = httpx.Client(
                base_url="http://feature-reader", transport=transport, timeout=timeout_s
            )
        else:
            self._client = httpx.Client(base_url=f"http://{address.netloc}", timeout=timeout_s)
        self.url = url

    def __call__(self, stream: Stream, columns: Sequence[str]) -> dict[str, Any]:
        body = {"timeframe": stream.timeframe, "market_key": stream.market_key}
        try:
            response = self._client.post("/online", json={**body, "columns": list(columns)})
            response.raise_for_status()
        except Exception as exc:  # the process is down, restarting or did not answer in time
            raise OnlineReadError(f"feature reader process unreachable: {_why(exc)}") from exc
        found = json.loads(response.text)
        if found["error"] is not None:
            raise OnlineReadError(found["error"])
        values: dict[str, Any] = found["values"]
        return values

    def facts(self) -> dict[str, Any]:
        """The reader process's :func:`~candlecast.serving.lean.process_facts`, or why not."""
        try:
            response = self._client.post("/facts", json={})
            response.raise_for_status()
        except Exception as exc:
            return {"error": f"feature reader process unreachable: {_why(exc)}"}
        facts: dict[str, Any] = response.json()
        return facts

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the reader process answers its readiness probe (``bentoml serve`` starts
        it beside the workers, not before them), so a worker's first refresh does not record
        an outage that is only a start-up; False, logged, after ``timeout_s`` (the worker then
        starts anyway, and its circuit breaker retries)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._client.get("/readyz").status_code == 200:
                    return True
                why = "not ready"
            except Exception as exc:  # refused while the process starts
                why = _why(exc)
            if time.monotonic() > deadline:
                log.error("the feature reader process not ready after %.0f s: %s", timeout_s, why)
                return False
            time.sleep(0.1)


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
