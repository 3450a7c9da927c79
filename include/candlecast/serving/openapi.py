"""What the service's OpenAPI document (``/docs.json``, the ``/docs`` page) says about itself.

BentoML titles a service's document after the service (``candlecast``), versions it after its
Bento (``None`` when served from source) and describes it with its own boilerplate (a
``candlecast:dev`` heading, badges, "This is a Machine Learning Service created with
BentoML", its team as contact). :func:`document` gives the service a real title, the
package's version and a description of what it answers; the request and answer examples
come from the models in :mod:`.schemas`.
"""

from __future__ import annotations

from typing import Any

import attrs
import bentoml

from candlecast import __version__

TITLE = "candlecast prediction service"

DESCRIPTION = """\
Forecasts of crypto candles, one **stream** (a symbol on an exchange at a timeframe) at a time.

* `POST /predict` with `{"pair": "BTC/USD"}` answers the next candle's log return and price,
  with the champion model that produced it, its prediction interval, and every other
  configured target and horizon (`target`, `horizon` select one).
* `POST /predict_batch`: many streams at once, or your own feature rows through one stream's
  model. `GET /pairs`: the served streams, their models and feature lists.
* `GET /readyz` says whether every stream is served; `POST /refresh` reloads a stream after
  the pipeline trained or materialized it (the pipeline calls it).

Every answer comes from the stream's champion, exported to ONNX and checked for parity by the
train DAG. Errors are `{"error": ...}` objects with the status codes listed per operation.
Requests need `Authorization: Bearer <key>` when the service has keys.
"""


def info() -> dict[str, Any]:
    """The document's ``info`` object."""
    return {"title": TITLE, "version": __version__, "description": DESCRIPTION}


class _Documented(bentoml.Service):
    """A service whose OpenAPI document carries :func:`info` (same slots as the service)."""

    __slots__ = ()

    @property
    def openapi_spec(self) -> Any:
        from bentoml._internal.service.openapi.specification import Info

        return attrs.evolve(super().openapi_spec, info=Info(**info()))


def document(service: bentoml.Service[Any]) -> None:
    """Give the service the title, version and description of :func:`info`."""
    service.__class__ = _Documented
