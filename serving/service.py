"""candlecast prediction service (BentoML).

POST /predict {"pair": "BTC/USD"} -> next-candle forecast from the pair's deployed ONNX
champion on its latest online features. GET /health -> what is deployed per pair.
BentoML's own /livez and /readyz are there too.

The deployed models live in the BentoML model store under CANDLECAST_HOME (one model per
pair, ``<pair>_forecaster``); they are looked up per request rather than declared at class
level, so a new champion is served as soon as the pipeline deploys it, without a restart.
"""

from __future__ import annotations

from typing import Any

import bentoml
from fastapi import FastAPI
from pydantic import Field

from candlecast.predict import Forecaster, NotReadyError, UnknownPairError

ops = FastAPI(title="candlecast operations")


@bentoml.service(name="candlecast", traffic={"timeout": 30}, workers=1)
@bentoml.asgi_app(ops, path="/")
class Candlecast:
    def __init__(self) -> None:
        self.forecaster = Forecaster()

    @bentoml.api
    def predict(
        self,
        pair: str = Field(description="Configured pair, e.g. BTC/USD", min_length=3, max_length=40),
    ) -> dict[str, Any]:
        """Forecast the next candle's log return and close price for a pair."""
        try:
            return self.forecaster.predict(pair)
        except UnknownPairError as exc:
            raise bentoml.exceptions.NotFound(str(exc.args[0])) from None
        except NotReadyError as exc:
            raise bentoml.exceptions.ServiceUnavailable(str(exc)) from None

    @ops.get("/health")
    def health(self) -> dict[str, Any]:
        """Deployed model per pair."""
        return self.forecaster.status()
