"""A TCP proxy that can fail on command, in front of a real server (Redis in the fault tests).

Modes: ``pass`` forwards both ways; ``hang`` keeps every connection open and accepts new ones
but forwards nothing (a server that stopped answering, the worst case for a client without a
read timeout); ``refuse`` closes every connection and stops listening (a server that is down).
Back to ``pass``, it listens again on the same port. Threads only; run it in the test process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["pass", "hang", "refuse"]


class FaultProxy:
    """Forwards 127.0.0.1:``port`` (0: any free port) to ``target``."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.mode: Mode = "pass"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = port
        self._listen()

    def set(self, mode: Mode) -> None:
        """Switch to ``mode`` (takes effect at once, for open connections too)."""
        with self._lock:
            self.mode = mode
            if mode == "refuse":
                self._close_all()
        if mode != "refuse" and self._listener is None:
            self._listen()

    def close(self) -> None:
        with self._lock:
            self.mode = "refuse"
            self._close_all()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_all(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refuse mode
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_RDWR)
                return
            if self.mode == "hang":
                continue  # swallowed: the other side waits for an answer that never comes
            try:
                sink.sendall(data)
            except OSError:
                return
