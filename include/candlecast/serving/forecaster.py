"""Online forecasts: the deployed ONNX champion applied to the latest online features.

Used by the BentoML service and by the deploy step's smoke test. The deployed model is looked
up in the BentoML model store on every call, so a new deployment is served without restart.
A request names a stream by symbol alone when that is unambiguous, else with its exchange and
timeframe too (:meth:`candlecast.config.PairsConfig.resolve`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from candlecast.config import PairConfig, PairsConfig, load_pairs
from candlecast.errors import ConfigError, NotReadyError
from candlecast.features import featurestore
from candlecast.modeling.kinds.base import window_inputs
from candlecast.serving.deploy import bentoml_store
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import ms_to_iso, timeframe_ms

log = logging.getLogger(__name__)


class Forecaster:
    """Answers forecasts for the configured streams."""

    def __init__(self, settings: Settings | None = None, pairs: PairsConfig | None = None) -> None:
        self.settings = settings or get_settings()
        self._fixed = pairs
        self._config: tuple[tuple[int, int] | None, PairsConfig] = (None, pairs or self._load())
        bentoml_store(self.settings)
        self._store = featurestore.feature_store(self.settings)
        self._sessions: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _load(self) -> PairsConfig:
        return load_pairs(self.settings.pairs)

    @property
    def pairs(self) -> PairsConfig:
        """The pair config, re-read when its file changes, so a stream added to the config is
        answered without a restart. A file that no longer validates keeps the last good one
        (logged), so a typo cannot take the service down."""
        if self._fixed is not None:
            return self._fixed
        try:
            stat = self.settings.pairs.stat()
            version = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return self._config[1]
        if version != self._config[0]:
            try:
                self._config = (version, self._load())
                log.info("pair config %s (re)loaded", self.settings.pairs)
            except ConfigError as exc:
                log.error("keeping the last valid pair config: %s", exc)
                self._config = (version, self._config[1])
        return self._config[1]

    def resolve(
        self, symbol: str, exchange: str | None = None, timeframe: str | None = None
    ) -> PairConfig:
        """The configured stream a request names (raises UnknownStreamError or
        AmbiguousStreamError)."""
        return self.pairs.resolve(symbol, exchange, timeframe)

    def predict(
        self, symbol: str, exchange: str | None = None, timeframe: str | None = None
    ) -> dict[str, Any]:
        """The next-candle forecast for a stream (``BTC/USD``, or with exchange/timeframe)."""
        pair = self.resolve(symbol, exchange, timeframe)
        session, meta, tag = self._model(pair)
        columns = [*meta["features"], "close", "candle_ts"]
        values = featurestore.online_features(self._store, pair.stream, columns)
        missing = [c for c in columns if values.get(c) is None]
        if missing:
            raise NotReadyError(
                f"{pair.stream.label}: no online features ({', '.join(missing[:3])} missing); "
                "materialize the stream first"
            )
        window = int(meta.get("window", 1))
        if window == 1:
            row = np.array([[values[c] for c in meta["features"]]], dtype=np.float32)
        else:
            row = self._window_row(pair, meta["features"], window, int(values["candle_ts"]))
        predicted = float(session.run(None, {session.get_inputs()[0].name: row})[0].reshape(-1)[0])
        return _answer(pair, meta, tag, values, predicted)

    def _window_row(
        self, pair: PairConfig, features: list[str], window: int, candle_ts: int
    ) -> np.ndarray:
        """The last ``window`` feature rows up to the online row, flattened as in training
        (read from the offline store, which holds every row the online one came from)."""
        step = timeframe_ms(pair.timeframe)
        table = featurestore.offline_table(pair.stream, self.settings)
        rows = table.read(candle_ts - (window - 1) * step, candle_ts + 1)
        if len(rows) == window:
            x, usable = window_inputs(rows, features, window, step)
            if usable[-1]:
                return x[-1:].astype(np.float32)
        raise NotReadyError(
            f"{pair.stream.label}: the model reads {window} consecutive feature rows and the "
            f"store has {len(rows)} up to {ms_to_iso(candle_ts)}"
        )

    def status(self) -> dict[str, Any]:
        """What is deployed for each stream (for the health endpoint)."""
        deployed: dict[str, Any] = {}
        for pair in self.pairs.pairs:
            try:
                _, meta, tag = self._model(pair)
                deployed[pair.key] = {
                    "pair": pair.symbol,
                    "exchange": pair.exchange,
                    "timeframe": pair.timeframe,
                    "model_version": meta["version"],
                    "kind": meta["kind"],
                    "bento_model": tag,
                }
            except NotReadyError as exc:
                deployed[pair.key] = {"error": str(exc)}
        return {"status": "ok", "streams": deployed}

    def _model(self, pair: PairConfig) -> tuple[Any, dict[str, Any], str]:
        import bentoml

        try:
            model = bentoml.models.get(f"{pair.stream.bento_model}:latest")
        except bentoml.exceptions.NotFound:
            raise NotReadyError(f"{pair.stream.label}: no model deployed yet") from None
        tag = str(model.tag)
        with self._lock:
            if tag not in self._sessions:
                import onnxruntime as ort

                meta = json.loads(Path(model.path_of("metadata.json")).read_text())
                session = ort.InferenceSession(
                    model.path_of("model.onnx"), providers=["CPUExecutionProvider"]
                )
                self._sessions[tag] = (session, meta)
                log.info("loaded %s (%s v%s)", tag, meta["kind"], meta["version"])
            session, meta = self._sessions[tag]
        return session, meta, tag


def _answer(
    pair: PairConfig, meta: dict[str, Any], tag: str, values: dict[str, Any], predicted: float
) -> dict[str, Any]:
    candle_ts = int(values["candle_ts"])
    step = timeframe_ms(pair.timeframe)
    features_at = candle_ts + step
    age_ms = int(time.time() * 1000) - features_at
    answer: dict[str, Any] = {
        "pair": pair.symbol,
        "exchange": pair.exchange,
        "timeframe": pair.timeframe,
        "stream": pair.key,
        "predicted_return": predicted,
        "predicted_price": float(values["close"]) * float(np.exp(predicted)),
        "last_close": float(values["close"]),
        "feature_timestamp": ms_to_iso(features_at),
        "forecast_for": ms_to_iso(candle_ts + 2 * step),
        "stale": age_ms > pair.serving.max_feature_age_candles * step,
        "model": {
            "name": meta["model_name"],
            "version": meta["version"],
            "kind": meta["kind"],
            "bento_model": tag,
        },
        "served_at": datetime.now(UTC).isoformat(),
    }
    half_width = meta.get("interval_half_width")
    if half_width is not None:
        low, high = predicted - half_width, predicted + half_width
        close = float(values["close"])
        answer["interval"] = {
            "coverage": meta.get("interval_coverage"),
            "return": [low, high],
            "price": [close * float(np.exp(low)), close * float(np.exp(high))],
        }
    if meta.get("note"):
        answer["note"] = meta["note"]
    return answer
