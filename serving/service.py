"""candlecast prediction service (BentoML).

POST /predict {"pair": "BTC/USD"} -> next-candle forecast from the stream's deployed ONNX
champion on its latest online features. The symbol alone is enough when one configured stream
has it; otherwise add "exchange" and "timeframe" (a 400 names the candidates, a 404 the
configured streams). GET /health -> what is deployed per stream. BentoML's own /livez and
/readyz are there too.

The deployed models live in the BentoML model store under CANDLECAST_HOME (one model per
stream, ``<stream key>_forecaster``); they are looked up per request rather than declared at
class level, so a new champion is served as soon as the pipeline deploys it, without restart.
"""

from __future__ import annotations

from typing import Any

import bentoml
from fastapi import FastAPI
from pydantic import Field

from candlecast.errors import AmbiguousStreamError, NotReadyError, UnknownStreamError
from candlecast.serving.forecaster import Forecaster

ops = FastAPI(title="candlecast operations")


@bentoml.service(name="candlecast", traffic={"timeout": 30}, workers=1)
@bentoml.asgi_app(ops, path="/")
class Candlecast:
    def __init__(self) -> None:
        self.forecaster = Forecaster()

    @bentoml.api
    def predict(
        self,
        pair: str = Field(
            description="Symbol (BTC/USD) or stream key", min_length=3, max_length=60
        ),
        exchange: str | None = Field(default=None, description="e.g. binance", max_length=32),
        timeframe: str | None = Field(default=None, description="e.g. 1h", max_length=8),
    ) -> dict[str, Any]:
        """Forecast the next candle's log return and close price for a stream."""
        try:
            return self.forecaster.predict(pair, exchange, timeframe)
        except UnknownStreamError as exc:
            raise bentoml.exceptions.NotFound(str(exc)) from None
        except AmbiguousStreamError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from None
        except NotReadyError as exc:
            raise bentoml.exceptions.ServiceUnavailable(str(exc)) from None

    @ops.get("/health")
    def health(self) -> dict[str, Any]:
        """Deployed model per stream."""
        return self.forecaster.status()
