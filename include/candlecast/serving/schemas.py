"""Request and response bodies of the prediction API (published in its OpenAPI document).

Answers are built as plain dicts on the hot path and serialized with orjson; these models are
their contract: the tests validate real answers against them and schemathesis checks every
response against the published document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Largest number of pairs or feature rows one batch request may carry.
MAX_BATCH_PAIRS = 100
MAX_BATCH_ROWS = 50_000


class _Strict(BaseModel):
    """A request body: unknown keys refused, and no coercion (``"1"`` or ``true`` is no
    horizon, ``true`` no feature value)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def examples(*found: dict[str, Any]) -> dict[str, Any]:
    """A model's examples for its JSON schema: ``examples`` (JSON Schema) and ``example``, the
    first one, which OpenAPI 3.0 documentation (the service's ``/docs``) shows and offers as
    the request to try, instead of ``"string"`` and ``0`` per field."""
    return {"examples": list(found), "example": found[0]}


class StreamRef(_Strict):
    """A stream: the symbol alone when one configured stream has it, else with exchange and
    timeframe; a stream key (``binance_eth_btc_5m``) is always exact."""

    pair: str = Field(description="Symbol (BTC/USD) or stream key", min_length=3, max_length=60)
    exchange: str | None = Field(default=None, description="e.g. binance", max_length=32)
    timeframe: str | None = Field(default=None, description="e.g. 1h", max_length=8)


class PredictRequest(StreamRef):
    horizon: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="Candles ahead: with `target`, selects one configured (target, horizon); "
        "1 without a target answers everything.",
    )
    target: Literal["return", "volatility"] | None = Field(
        default=None,
        description="Answer only this target at `horizon` (404 when the stream does not "
        "forecast it); default: every configured target and horizon.",
    )
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        json_schema_extra=examples(
            {"pair": "BTC/USD"},
            {"pair": "ETH/BTC", "exchange": "binance", "timeframe": "5m", "horizon": 1},
            {"pair": "BTC/USD", "target": "volatility", "horizon": 24},
        ),
    )


class ModelInfo(BaseModel):
    name: str = Field(description="Registered model (MLflow) of the stream")
    version: str = Field(description="Registered model version that produced the forecast")
    kind: str = Field(description="Model kind (lightgbm, persistence, ...)")
    bento_model: str = Field(description="BentoML model tag served")


_MULTIPLIER = "m: the normalized half-width served (the band is forecast +- m * sigma)"
_ACI_LEVEL = (
    "The level served now (1 - alpha of adaptive conformal inference): above the nominal "
    "level after realized misses, below it after a run of hits; the nominal level until "
    "monitoring has judged outcomes of the served model"
)


class Interval(BaseModel):
    coverage: float | None = Field(description="Nominal coverage (split conformal)")
    return_: list[float] = Field(alias="return", description="[low, high] log return")
    price: list[float] = Field(description="[low, high] price")
    multiplier: float | None = Field(default=None, description=_MULTIPLIER)
    aci_level: float | None = Field(default=None, description=_ACI_LEVEL)


class Band(BaseModel):
    return_: list[float] = Field(alias="return", description="[low, high] log return")
    price: list[float] = Field(description="[low, high] price")
    multiplier: float = Field(description=_MULTIPLIER)
    aci_level: float = Field(description=_ACI_LEVEL)


class Intervals(BaseModel):
    """Intervals whose width follows the volatility forecast: ``forecast +- m * sigma``, ``m``
    moved online by adaptive conformal inference (per stream, target, horizon and level)."""

    sigma: float = Field(
        description="Ex-ante sigma of the horizon's log return (the card's fitted sigma)"
    )
    method: str = Field(description="adaptive conformal (ACI), or normalized conformal before")
    levels: dict[str, Band] = Field(description="By nominal coverage ('0.9')")


class TargetModel(BaseModel):
    name: str = Field(description="Registered model (MLflow) of the stream's target")
    version: str | None
    kind: str
    baseline: bool = Field(description="A baseline is served: no learned kind beat it")


class TargetForecast(BaseModel):
    """One configured target at one horizon."""

    target: str = Field(description="return or volatility")
    horizon: int = Field(description="Candles ahead")
    key: str = Field(description="return_h4, volatility_h24, ...")
    forecast_for: str = Field(description="Close time of the last candle the forecast covers")
    value: float = Field(description="The model output: log return, or realized variance")
    log_return: float | None = None
    price: float | None = None
    variance: float | None = Field(default=None, description="Sum of h squared log returns")
    sigma: float | None = Field(default=None, description="sqrt(variance): h-candle volatility")
    annualized_volatility: float | None = None
    model: TargetModel
    decision: str = Field(description="Why this model is served (the gate's decision)")
    intervals: Intervals | None = None
    note: str | None = None


class Forecast(BaseModel):
    """The next-candle forecast of one stream, and its other targets and horizons."""

    pair: str
    exchange: str
    timeframe: str
    stream: str = Field(description="Stream key")
    horizon: int = Field(description="Candles ahead")
    predicted_return: float = Field(description="Forecast log return of the next candle")
    predicted_price: float
    last_close: float
    feature_timestamp: str = Field(description="Close time of the candle the features describe")
    forecast_for: str = Field(description="Close time of the forecast candle")
    stale: bool = Field(
        description="Features older than the pair's serving tolerance, or answered from memory "
        "while the online store is unavailable (stale_reason)"
    )
    stale_reason: str | None = Field(
        default=None, description="Why an answer is served from memory (the online store is down)"
    )
    snapshot_age_seconds: float | None = Field(
        default=None, description="Age of the in-memory snapshot answered from (with stale_reason)"
    )
    model: ModelInfo
    served_at: str
    interval: Interval | None = None
    intervals: Intervals | None = None
    note: str | None = None
    targets: list[TargetForecast] = Field(
        default_factory=list, description="Every other configured target and horizon"
    )
    targets_not_trained: list[str] = Field(
        default_factory=list, description="Configured targets with no champion yet"
    )
    model_config = ConfigDict(
        # the bundled BTC/USD stream's answer for the candle after 2022-03-01 00:00
        json_schema_extra=examples(
            {
                "pair": "BTC/USD",
                "exchange": "replay",
                "timeframe": "1h",
                "stream": "replay_btc_usd_1h",
                "horizon": 1,
                "predicted_return": 0.00011,
                "predicted_price": 43183.73,
                "last_close": 43178.98,
                "feature_timestamp": "2022-03-01T00:00:00+00:00",
                "forecast_for": "2022-03-01T01:00:00+00:00",
                "stale": False,
                "model": {
                    "name": "replay_btc_usd_1h_forecaster",
                    "version": "1",
                    "kind": "lightgbm",
                    "bento_model": "replay_btc_usd_1h_forecaster:v1",
                },
                "served_at": "2022-03-01T00:00:02+00:00",
                "interval": {
                    "coverage": 0.9,
                    "return": [-0.0124, 0.01262],
                    "price": [42647.04, 43727.18],
                    "multiplier": 1.69,
                    "aci_level": 0.913,
                },
                "intervals": {
                    "sigma": 0.0074,
                    "method": "adaptive conformal (ACI), EWMA sigma",
                    "levels": {
                        "0.8": {
                            "return": [-0.00914, 0.00936],
                            "price": [42786.12, 43585.03],
                            "multiplier": 1.25,
                            "aci_level": 0.806,
                        },
                        "0.9": {
                            "return": [-0.0124, 0.01262],
                            "price": [42647.04, 43727.18],
                            "multiplier": 1.69,
                            "aci_level": 0.913,
                        },
                        "0.95": {
                            "return": [-0.01506, 0.01528],
                            "price": [42533.58, 43843.82],
                            "multiplier": 2.05,
                            "aci_level": 0.957,
                        },
                    },
                },
            }
        )
    )


class PairsBatch(_Strict):
    """One forecast per pair, from the served features."""

    pairs: list[StreamRef] = Field(min_length=1, max_length=MAX_BATCH_PAIRS)
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        json_schema_extra=examples({"pairs": [{"pair": "BTC/USD"}, {"pair": "ETH/BTC"}]}),
    )


class RowsBatch(_Strict):
    """A user's own feature rows, run through one pair's served model."""

    pair: str = Field(min_length=3, max_length=60, description="Symbol or stream key")
    exchange: str | None = Field(default=None, max_length=32)
    timeframe: str | None = Field(default=None, max_length=8)
    features: list[str] = Field(
        min_length=1,
        max_length=512,
        description="Column names of rows; must be exactly the model's feature list "
        "(GET /pairs lists it), in any order",
    )
    rows: list[list[float]] = Field(
        min_length=1,
        max_length=MAX_BATCH_ROWS,
        description="Feature rows, oldest first; a model reading a window of n rows "
        "forecasts from the n-th row on",
    )
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        json_schema_extra=examples(
            {
                "pair": "BTC/USD",
                "features": ["ret_1", "rsi_14"],
                "rows": [[0.001, 55.0], [-0.002, 48.5]],
            }
        ),
    )


class BatchItemError(BaseModel):
    request: StreamRef
    status: int = Field(description="The status /predict would answer")
    error: str


class BatchForecasts(BaseModel):
    """Answers per requested pair (in request order), forecasts or errors."""

    forecasts: list[Forecast]
    errors: list[BatchItemError]


class RowForecasts(BaseModel):
    """Forecasts for a user's feature rows."""

    stream: str
    model: ModelInfo
    window: int
    predicted_return: list[float] = Field(description="One per row from the window-th on")


class PairInfo(BaseModel):
    pair: str
    exchange: str
    timeframe: str
    stream: str
    served: bool = Field(description="A model and features are loaded")
    model: ModelInfo | None = None
    alias: str | None = Field(default=None, description="Registry alias of the served version")
    trained_at: str | None = None
    deployed_at: str | None = None
    holdout_metrics: dict[str, float] = Field(default_factory=dict)
    features: list[str] = Field(default_factory=list)
    window: int | None = None
    feature_timestamp: str | None = None
    stale: bool | None = None
    error: str | None = Field(default=None, description="Why the stream is not served")


class Pairs(BaseModel):
    pairs: list[PairInfo]


class RefreshRequest(_Strict):
    stream: str | None = Field(
        default=None,
        min_length=3,
        max_length=60,
        description="Stream key or symbol that has news; none: every configured stream",
    )
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        json_schema_extra={"examples": [{"stream": "replay_btc_usd_1h"}]},
    )


class StreamState(BaseModel):
    stream: str
    model_version: str | None = None
    feature_timestamp: str | None = None
    error: str | None = None
    announcement: str | None = Field(
        default=None,
        description="Why the news was not passed on to the service's other workers (its file "
        "could not be written); they find it at their periodic check",
    )


class Refreshed(BaseModel):
    refreshed: list[StreamState]


class Readiness(BaseModel):
    ready: bool
    online_store: Literal["ok", "unavailable"]
    streams: list[StreamState]
    reason: str | None = None
    forecast_log: str = Field(
        default="ok", description="ok, or why answered forecasts are not being logged"
    )


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="What went wrong, for people")
    detail: list[str] | None = Field(
        default=None, description="One line per invalid field (422), or the candidates (400)"
    )
