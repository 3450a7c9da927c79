"""A circuit breaker for the online store: after a failed read, stop asking for a cooldown.

A store that hangs or refuses costs every read its full timeout; a breaker pays that once.
After :attr:`CircuitBreaker.threshold` failures in a row the circuit opens: reads are refused
at once (:class:`StoreUnavailableError`) until ``cooldown_s`` has passed, when exactly one
caller is let through as a trial. Its success closes the circuit; its failure opens it for
another cooldown. The clock is injected, so the states are tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


class StoreUnavailableError(RuntimeError):
    """The store failed recently and the breaker refuses to ask it again yet."""


class RemoteStoreError(RuntimeError):
    """A store failure another process reported, its message already naming the error (the
    breaker records it as it is, not as this class's)."""


@dataclass(frozen=True)
class Outage:
    """Why and since when the store is considered down."""

    since: float
    reason: str
    failures: int

    def describe(self, now: float) -> str:
        at = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"unavailable since {at} ({now - self.since:.0f} s): {self.reason}"


class CircuitBreaker:
    """Guards calls to one store (see module doc); thread-safe."""

    def __init__(
        self,
        name: str,
        threshold: int = 1,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._first_failure: float | None = None
        self._reason = ""
        self._retry_at = 0.0

    def call(self, read: Callable[[], T]) -> T:
        """``read()`` when the circuit lets it through, its failure recorded.

        Raises:
            StoreUnavailableError: the circuit is open (the store failed within the cooldown).
        """
        self._enter()
        try:
            value = read()
        except RemoteStoreError as exc:  # already names the store's own error
            self.failure(str(exc))
            raise
        except Exception as exc:
            self.failure(f"{type(exc).__name__}: {exc}")
            raise
        self.success()
        return value

    def _enter(self) -> None:
        with self._lock:
            if self._failures < self.threshold:
                return
            now = self.clock()
            if now < self._retry_at:
                raise StoreUnavailableError(
                    f"{self.name} {self._outage_locked().describe(now)}; "
                    f"next try in {self._retry_at - now:.0f} s"
                )
            self._retry_at = now + self.cooldown_s  # one trial per cooldown, the rest refused

    def failure(self, reason: str) -> None:
        with self._lock:
            now = self.clock()
            if self._failures == 0:
                self._first_failure = now
            self._failures += 1
            self._reason = reason.splitlines()[0][:300] if reason else "failed"
            self._retry_at = now + self.cooldown_s

    def success(self) -> None:
        with self._lock:
            self._failures, self._first_failure, self._reason = 0, None, ""

    def trial_due(self) -> bool:
        """Whether the circuit is open and its cooldown has passed (a call would be a trial)."""
        with self._lock:
            return self._failures >= self.threshold and self.clock() >= self._retry_at

    def outage(self) -> Outage | None:
        """The current outage, or None while reads succeed."""
        with self._lock:
            return self._outage_locked() if self._failures >= self.threshold else None

    def _outage_locked(self) -> Outage:
        since = self._first_failure if self._first_failure is not None else self.clock()
        return Outage(since=since, reason=self._reason, failures=self._failures)
