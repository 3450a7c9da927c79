"""The prediction API: routes, error contract and readiness, on a FastAPI app that the BentoML
service mounts (BentoML publishes its OpenAPI document beside its own endpoints).

Answers come from the :class:`~candlecast.serving.forecaster.Forecaster`'s memory on the
event loop; only a stream that needs a refresh is loaded, in a worker thread. Bodies are
parsed with orjson and answers serialized with orjson straight to bytes (the pydantic models
in :mod:`.schemas` document them; the tests hold real answers to them). Every error is an
:class:`~candlecast.serving.schemas.ErrorBody`: 400 for a body that is not JSON or a symbol
several streams share, 404 for an unknown stream, 422 for JSON that breaks the schema, 503
for a stream with no model or features yet (401, 413 and 415 come from :mod:`.guard`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from candlecast.config import PairConfig
from candlecast.errors import AmbiguousStreamError, NotReadyError, UnknownStreamError
from candlecast.modeling.mlflow_keys import CHAMPION, holdout_metric
from candlecast.serving import forecast_log, lean, metrics
from candlecast.serving.docs_page import add_docs_page
from candlecast.serving.forecaster import Forecaster
from candlecast.serving.loaded import model_info
from candlecast.serving.openapi import TITLE
from candlecast.serving.schemas import (
    BatchForecasts,
    ErrorBody,
    Forecast,
    Pairs,
    PairsBatch,
    PredictRequest,
    Readiness,
    Refreshed,
    RefreshRequest,
    RowForecasts,
    RowsBatch,
    StreamRef,
)
from candlecast.serving.snapshot import Snapshot, answer, select


class OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """Bodies parsed by orjson (several times faster than ``json`` on large batches)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return route


#: An absolute file path (two or more parts, not inside a URL or a symbol like ``BTC/USD``).
_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")


def public(text: str | None) -> str | None:
    """An error message as a body may carry it: a file path shortened to its last part (the
    service's directories are nobody's business; the log keeps them)."""
    return None if text is None else _PATH.sub(r"…/\1", text)


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: list[str] | None = None) -> None:
        message = public(message) or ""
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Body is not JSON, or the symbol names several streams (detail: their keys)",
        401: "Missing or invalid API key",
        404: "No configured stream matches",
        413: "Request body too large",
        415: "Body is not application/json",
        422: "JSON that breaks the request schema (detail: one line per field)",
        503: "No deployed model or no online features for the stream yet",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


def create_app(get_forecaster: Callable[[], Forecaster]) -> FastAPI:
    """The API app; ``get_forecaster`` returns the service's forecaster (made at start-up)."""
    # FastAPI's own /docs and /redoc load their scripts from a CDN: the service serves its
    # own page instead (docs_page), which works offline
    app = FastAPI(title="candlecast", version="1", docs_url=None, redoc_url=None)
    app.router.route_class = OrjsonRoute
    _handlers(app)
    add_docs_page(app, TITLE)

    @app.post(
        "/predict",
        response_model=Forecast,
        responses=errors(400, 401, 404, 413, 415, 422, 503),
        summary="Forecast one stream: the next candle and every configured target and horizon",
    )
    async def predict(request: PredictRequest) -> Response:
        started = time.perf_counter()
        forecaster = get_forecaster()
        snap = await _snapshot(forecaster, _resolve(forecaster, request))
        metrics.PREDICTIONS.labels(stream=snap.pair.key, endpoint="predict").inc()
        body = _answer(forecaster, snap)
        if request.target is not None or request.horizon != 1:
            try:
                body = select(body, request.target, request.horizon)
            except ValueError as exc:
                raise ApiError(404, str(exc)) from None
        forecast_log.record(body)  # queued; a background thread writes it
        response = json_response(body)
        metrics.LATENCY.labels(endpoint="predict").observe(time.perf_counter() - started)
        return response

    @app.post(
        "/predict_batch",
        response_model=BatchForecasts | RowForecasts,
        responses=errors(400, 401, 404, 413, 415, 422, 503),
        summary="Forecasts for many pairs, or for many feature rows of one pair",
    )
    async def predict_batch(request: PairsBatch | RowsBatch) -> Response:
        started = time.perf_counter()
        forecaster = get_forecaster()
        if isinstance(request, PairsBatch):
            body = await _many_pairs(forecaster, request.pairs)
        else:
            body = await _rows(forecaster, request)
        response = json_response(body)
        metrics.LATENCY.labels(endpoint="predict_batch").observe(time.perf_counter() - started)
        return response

    @app.get(
        "/pairs",
        response_model=Pairs,
        responses=errors(401),
        summary="Served pairs: model version, alias, trained-at, holdout metrics, features",
    )
    async def pairs() -> Response:
        forecaster = get_forecaster()
        return json_response({"pairs": await run_in_threadpool(_pairs, forecaster)})

    @app.post(
        "/refresh",
        response_model=Refreshed,
        responses=errors(400, 401, 404, 413, 415, 422),
        summary="News of a stream (new features or champion): reload it before answering",
    )
    async def refresh(request: RefreshRequest) -> Response:
        forecaster = get_forecaster()
        if request.stream is None:
            chosen = list(forecaster.pairs.pairs)
        else:
            chosen = [_resolve(forecaster, StreamRef(pair=request.stream))]
        states = await run_in_threadpool(_announce, forecaster, chosen)
        return json_response({"refreshed": states})

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready (reason says why)"}},
        summary="Ready when the online store answers and a model is served",
    )
    async def readyz() -> Response:
        status, body = await readiness(get_forecaster())
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/health", responses=errors(401), summary="Deployed model per stream")
    async def health() -> dict[str, Any]:
        status = await run_in_threadpool(get_forecaster().status)
        problems = [forecast_log.problem(), get_forecaster().announcements.problem()]
        for problem in filter(None, problems):  # answers still go out: degraded, not down
            status["degraded"] = [*status["degraded"], problem]
            status["status"] = "degraded" if status["status"] == "ok" else status["status"]
        status["degraded"] = [public(line) for line in status["degraded"]]
        reader = await run_in_threadpool(get_forecaster().feature_reader_facts)
        # the answering worker's footprint, and the feature reader process's where there is one
        return {**status, "process": lean.process_facts(), "feature_reader": reader}

    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        body: dict[str, Any] = {"error": exc.message}
        if exc.detail is not None:
            body["detail"] = exc.detail
        return json_response(body, exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return json_response({"error": "the body is not valid JSON"}, 400)
        lines = [
            f"{'.'.join(str(part) for part in p.get('loc', ())[1:]) or 'body'}: {p.get('msg')}"
            for p in problems[:20]
        ]
        return json_response({"error": f"{len(problems)} invalid field(s)", "detail": lines}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code)


def _resolve(forecaster: Forecaster, ref: StreamRef) -> PairConfig:
    try:
        return forecaster.resolve(ref.pair, ref.exchange, ref.timeframe)
    except UnknownStreamError as exc:
        raise ApiError(404, str(exc)) from None
    except AmbiguousStreamError as exc:
        raise ApiError(400, str(exc), exc.candidates) from None


async def _snapshot(forecaster: Forecaster, pair: PairConfig) -> Snapshot:
    try:
        if forecaster.waits(pair):  # may read a store (bounded): off the event loop
            return await run_in_threadpool(forecaster.snapshot, pair)
        return forecaster.snapshot(pair)
    except NotReadyError as exc:
        raise ApiError(503, str(exc)) from None


def _answer(forecaster: Forecaster, snap: Snapshot, now_ms: int | None = None) -> dict[str, Any]:
    """The snapshot's answer; while the online store is down it is marked stale, with why
    and how old the snapshot is (its features may have moved on in the store)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    body = answer(snap, now_ms)
    outage = forecaster.online.outage()
    if outage is not None:
        body["stale"] = True
        body["stale_reason"] = public(f"online store {outage.describe(now_ms / 1000)}")
        body["snapshot_age_seconds"] = round(now_ms / 1000 - snap.loaded_at, 3)
    return body


async def _many_pairs(forecaster: Forecaster, refs: list[StreamRef]) -> dict[str, Any]:
    forecasts, failed = [], []
    now_ms = int(time.time() * 1000)
    for ref in refs:
        try:
            snap = await _snapshot(forecaster, _resolve(forecaster, ref))
        except ApiError as exc:
            failed.append({"request": ref.model_dump(), "status": exc.status, "error": exc.message})
            continue
        metrics.PREDICTIONS.labels(stream=snap.pair.key, endpoint="predict_batch").inc()
        forecasts.append(_answer(forecaster, snap, now_ms))
        forecast_log.record(forecasts[-1])
    return {"forecasts": forecasts, "errors": failed}


async def _rows(forecaster: Forecaster, request: RowsBatch) -> dict[str, Any]:
    ref = StreamRef(pair=request.pair, exchange=request.exchange, timeframe=request.timeframe)
    pair = _resolve(forecaster, ref)
    await _snapshot(forecaster, pair)
    try:
        snap, predicted = forecaster.predict_rows(pair, request.features, request.rows)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    except NotReadyError as exc:
        raise ApiError(503, str(exc)) from None
    metrics.PREDICTIONS.labels(stream=pair.key, endpoint="predict_batch_rows").inc(len(predicted))
    return {
        "stream": pair.key,
        "model": model_info(snap.model),
        "window": snap.model.window,
        "predicted_return": predicted.tolist(),
    }


def _pairs(forecaster: Forecaster) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    out = []
    for pair in forecaster.pairs.pairs:
        entry: dict[str, Any] = {
            "pair": pair.symbol,
            "exchange": pair.exchange,
            "timeframe": pair.timeframe,
            "stream": pair.key,
            "served": False,
        }
        try:
            snap = forecaster.snapshot(pair)
        except NotReadyError as exc:
            out.append(entry | {"error": public(str(exc))})
            continue
        card = snap.model.card
        metrics_ = {holdout_metric(k): float(v) for k, v in card.scores.items()}
        entry |= {
            "served": True,
            "model": model_info(snap.model),
            "alias": CHAMPION,
            "trained_at": card.trained_at,
            "deployed_at": snap.model.deployed_at,
            "holdout_metrics": metrics_,
            "features": snap.model.features,
            "window": snap.model.window,
            "feature_timestamp": answer(snap, now_ms)["feature_timestamp"],
            "stale": snap.stale(now_ms),
        }
        if forecaster.error(pair.key):
            entry["error"] = public(forecaster.error(pair.key))
        out.append(entry)
    return out


def _announce(forecaster: Forecaster, chosen: list[PairConfig]) -> list[dict[str, Any]]:
    states = []
    for pair in chosen:
        # a file that cannot be written (a full disk) only keeps the news from the other
        # workers: this one still reloads, and the answer says what was not passed on
        shared = forecaster.announcements.record(pair.key) is not None
        state: dict[str, Any] = {"stream": pair.key}
        if not shared:
            state["announcement"] = public(forecaster.announcements.problem())
        try:
            snap = forecaster.refresh(pair)
            state |= {
                "model_version": str(snap.model.card.version),
                "feature_timestamp": answer(snap)["feature_timestamp"],
            }
        except NotReadyError as exc:
            state["error"] = public(str(exc))
        if forecaster.error(pair.key) and "error" not in state:
            state["error"] = public(forecaster.error(pair.key))
        states.append(state)
    return states


async def readiness(forecaster: Forecaster) -> tuple[int, bytes]:
    """(status, body) of ``/readyz``: 200 when ``/predict`` answers for at least one stream
    (its snapshot is in memory, whatever the stores say now: a store that fails makes the
    answers stale, not absent), else 503 with the reason. ``online_store`` says whether the
    online store answers a read (at once while its breaker is open), ``forecast_log`` whether
    answers are being logged (a failing log degrades, it does not make the service unready)."""
    problem = await run_in_threadpool(forecaster.online_store_ok)
    served = forecaster.served()
    if not served and problem is None:
        await run_in_threadpool(forecaster.refresh_all)
        served = forecaster.served()
    streams = [
        {
            "stream": pair.key,
            "model_version": str(served[pair.key].model.card.version)
            if pair.key in served
            else None,
            "error": public(forecaster.error(pair.key)),
        }
        for pair in forecaster.pairs.pairs
    ]
    reason = None
    if not served:
        reason = "no stream has a deployed model and online features"
        reason = f"online store unavailable: {public(problem)}" if problem else reason
    body = {
        "ready": reason is None,
        "online_store": "ok" if problem is None else "unavailable",
        "streams": streams,
        "reason": reason,
        "forecast_log": public(forecast_log.problem()) or "ok",
    }
    return (200 if reason is None else 503), orjson.dumps(body)
