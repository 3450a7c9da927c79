"""The service's safety net: every stream refreshed periodically, in a background thread, so
news that nobody announced (a deploy while the service was down, a missed notification) is
served within one period."""

from __future__ import annotations

import logging
import threading

from candlecast.serving.forecaster import Forecaster

log = logging.getLogger(__name__)


class Refresher(threading.Thread):
    """Calls :meth:`Forecaster.refresh_all` every ``interval`` seconds until stopped."""

    def __init__(self, forecaster: Forecaster, interval: float) -> None:
        super().__init__(name="candlecast-refresher", daemon=True)
        self.forecaster = forecaster
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                failed = {k: v for k, v in self.forecaster.refresh_all().items() if v}
            except Exception:
                log.exception("periodic refresh failed")
                continue
            if failed:
                log.info("periodic refresh: not served: %s", failed)

    def stop(self) -> None:
        self._stop_event.set()
