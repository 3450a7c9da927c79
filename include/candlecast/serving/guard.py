"""What every request passes before it reaches the API: API keys, body size and media type,
readiness, and one structured access-log line.

A pure ASGI middleware (no per-request objects beyond what it needs): answers 401 to a
missing or wrong ``Authorization: Bearer <key>`` when keys are configured (liveness and
readiness stay open for probes), 413 to a body over the limit, 415 to a body that is not
JSON. Every error body is the documented :class:`~candlecast.serving.schemas.ErrorBody`,
whoever answers it (:func:`json_errors`).
The key is never logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson

from candlecast.serving.auth import allowed, bearer

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("candlecast.access")

#: Open without a key: probes must not need one.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
JSON_TYPES = (b"application/json",)


async def send_json(send: Send, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


class Guard:
    """The service's outermost own middleware (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: tuple[bytes, ...] = (),
        max_body_bytes: int = 8 * 1024 * 1024,
        access_log_enabled: bool = True,
        readiness: Callable[[], Awaitable[tuple[int, bytes]]] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.access_log_enabled = access_log_enabled
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        json_send = json_errors(scope, send)

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await json_send(message)

        try:
            await self._handle(scope, receive, recording_send)
        finally:
            if self.access_log_enabled:
                self._log(scope, status[0], started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if self.keys and path not in OPEN_PATHS:
            token = bearer(_header(scope, b"authorization"))
            if not allowed(self.keys, token):
                body = error_body("missing or invalid API key (Authorization: Bearer <key>)")
                await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
                return
        if path == "/readyz" and self.readiness is not None:
            await send_json(send, *await self.readiness())
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            await self._with_body(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await send_json(send, 413, error_body(self._too_large()))
            return
        media = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if not (media in JSON_TYPES or media.endswith(b"+json")):
            shown = media.decode("latin-1")[:60] or "none"
            await send_json(send, 415, error_body(f"send JSON (application/json), not {shown}"))
            return
        chunks, size = [], 0
        while True:  # read the whole body first, so a chunked body is bounded too
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_json(send, 413, error_body(self._too_large()))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body over the limit of {self.max_body_bytes} bytes"

    def _log(self, scope: Scope, status: int, started: float) -> None:
        client = scope.get("client")
        access_log.info(
            json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "client": client[0] if client else None,
                },
                separators=(",", ":"),
            )
        )


#: Headers an error answer keeps when its body is replaced.
_KEPT_HEADERS = frozenset({b"allow", b"www-authenticate", b"retry-after"})


def json_errors(scope: Scope, send: Send) -> Send:
    """``send`` for one request, with an error answer that is not JSON (a framework's
    plain-text ``Not Found`` or ``Method Not Allowed``, BentoML's own routes included) turned
    into the documented ``{"error": ...}`` body: one error contract for every path."""
    held: list[dict[str, Any]] = []

    async def converting(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = dict((bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ()))
            media = headers.get(b"content-type", b"").split(b";")[0].strip()
            if message["status"] >= 400 and not (media in JSON_TYPES or media.endswith(b"+json")):
                held.append(message)  # answered when the body ends
                return
        elif held and message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            start = held.pop()
            status = int(start["status"])
            kept = [
                (k, v) for k, v in start.get("headers", ()) if bytes(k).lower() in _KEPT_HEADERS
            ]
            text = f"{_phrase(status)}: {scope['method']} {scope['path']}"
            await send_json(send, status, error_body(text), kept)
            return
        await send(message)

    return converting


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"error {status}"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
