"""candlecast prediction service (BentoML), a thin shell over :mod:`candlecast.serving`.

``POST /predict``, ``POST /predict_batch``, ``GET /pairs``, ``POST /refresh``, ``GET /health``
and ``/readyz`` come from :func:`candlecast.serving.api.create_app` (mounted here, so BentoML
publishes them in its OpenAPI document at ``/docs.json``); ``/livez``, ``/healthz`` and
``/metrics`` are BentoML's own. Answers come from memory: every stream's deployed ONNX champion
and latest features are loaded at start-up, reloaded when the pipeline announces news
(``POST /refresh``) and checked periodically (``CANDLECAST_SERVICE_REFRESH_SECONDS``).

BentoML's per-request access log is off (one structured JSON line per request comes from
:mod:`candlecast.serving.guard` instead) and tracing skips the API paths: both cost more than
a forecast (bench/bench_serving.py measured each setting).
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from candlecast.serving import lean

lean.keep_torch_out()  # before Feast is imported: see candlecast.serving.lean

import bentoml  # noqa: E402

from candlecast.serving import metrics  # noqa: E402
from candlecast.serving.api import create_app, readiness  # noqa: E402
from candlecast.serving.auth import load_keys  # noqa: E402
from candlecast.serving.feature_reader import OnlineRows, RemoteReader  # noqa: E402
from candlecast.serving.forecaster import Forecaster  # noqa: E402
from candlecast.serving.guard import Guard, access_log  # noqa: E402
from candlecast.serving.openapi import document  # noqa: E402
from candlecast.serving.options import ServiceOptions  # noqa: E402
from candlecast.serving.refresher import Refresher  # noqa: E402
from candlecast.settings import get_settings, read_settings  # noqa: E402

# Read at import: BentoML needs the worker count when the class is declared.
OPTIONS = read_settings(ServiceOptions)
_current: list[Forecaster] = []
#: How long a worker waits for the feature reader's answer: each of its reads is bounded by the
#: store timeout, so this is only reached when the process itself is stuck.
FEATURES_TIMEOUT_S = max(5.0, 5 * OPTIONS.store_timeout_seconds)


def _forecaster() -> Forecaster:
    return _current[0]


api = create_app(_forecaster)


@bentoml.service(
    name="candlecast-features",
    workers=1,
    # each read is bounded by the store timeout; the workers' calls give up a little later
    traffic={"timeout": FEATURES_TIMEOUT_S},
    logging={"access": {"enabled": False}},
)
class OnlineFeatures:
    """The one process of the service that opens Feast: the workers ask it for online rows
    (see :mod:`candlecast.serving.feature_reader`)."""

    def __init__(self) -> None:
        self.rows = OnlineRows(get_settings(), OPTIONS.store_timeout_seconds)

    @bentoml.api
    def online(self, timeframe: str, market_key: str, columns: list[str]) -> str:
        return self.rows.read(timeframe, market_key, columns)

    @bentoml.api
    def facts(self) -> dict[str, Any]:
        return lean.process_facts()


@bentoml.service(
    name="candlecast",
    workers=OPTIONS.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": "predict,predict_batch,pairs,refresh,health"},
)
@bentoml.asgi_app(api, path="/")
class Candlecast:
    features = bentoml.depends(OnlineFeatures)

    def __init__(self) -> None:
        metrics.setup()
        if OPTIONS.access_log and not access_log.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            access_log.addHandler(handler)
            access_log.setLevel(logging.INFO)
            access_log.propagate = False
        self.forecaster = Forecaster(online=self._feature_reader())
        _current[:] = [self.forecaster]
        self.forecaster.refresh_all()
        self.refresher = Refresher(self.forecaster, OPTIONS.refresh_seconds)
        self.refresher.start()
        # The libraries loaded by now (Feast, BentoML, onnxruntime...) are millions of objects
        # that live as long as the process: out of the collector's sight, a full collection no
        # longer stalls every request for ~200 ms (the p99 bench_serving.py measured).
        gc.collect()
        gc.freeze()

    def _feature_reader(self) -> RemoteReader | None:
        """The reader of the feature reader process ``bentoml serve`` started beside the
        workers (None, so Feast is read in this process, where it runs in-process)."""
        remote = getattr(self.features, "to_async", None)  # a proxy when served
        if remote is None:
            return None
        reader = RemoteReader(remote.url, timeout_s=FEATURES_TIMEOUT_S)
        reader.wait_ready(timeout_s=120)  # the worker starts anyway: its breaker retries
        return reader

    def __metrics__(self, content: str) -> str:
        return content + metrics.feature_age_text(self.forecaster.served())


document(Candlecast)  # a real title, version and description in /docs.json

Candlecast.add_asgi_middleware(  # type: ignore[attr-defined]
    Guard,
    keys=load_keys(),
    max_body_bytes=OPTIONS.max_body_bytes,
    access_log_enabled=OPTIONS.access_log,
    readiness=lambda: readiness(_forecaster()),
)
