"""One whole-pipeline run of a stream at a time.

Two ``candlecast run`` of one stream at once both trained, registered and moved the champion
within a second. A run holds an exclusive ``flock`` on ``<home>/locks/<stream key>.run.lock``
for its whole length; a second run finds it held and stops at once, naming the holder (its
pid and start time, written into the lock file). The kernel releases the lock when its holder
exits, however it exits, so a killed run never leaves the stream locked.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from candlecast.errors import StreamBusyError
from candlecast.names import Stream
from candlecast.settings import Settings, get_settings


@contextmanager
def stream_run(stream: Stream, settings: Settings | None = None) -> Iterator[None]:
    """Hold the stream's run lock for the block.

    Raises:
        StreamBusyError: another run of the stream holds it (the message says which).
    """
    folder = (settings or get_settings()).paths.home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{stream.key}.run.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StreamBusyError(
                f"{stream.label}: another run of this stream is running ({holder}); "
                "wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
