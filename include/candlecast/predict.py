"""Online forecasts: the deployed ONNX champion applied to the latest online features.

Used by the BentoML service and by the deploy step's smoke test. The deployed model is looked
up in the BentoML model store on every call, so a new deployment is served without restart.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast import featurestore
from candlecast.config import PairConfig, PairsConfig, load_pairs
from candlecast.deploy import bento_model_name, bentoml_store
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

PERSISTENCE_NOTE = (
    "No trained model beats the persistence forecast on the latest holdout, so the champion is "
    "persistence: the forecast is 'no change' (return 0, price = last close)."
)


class UnknownPairError(KeyError):
    """The requested pair is not configured."""


class NotReadyError(RuntimeError):
    """No deployed model or no online features for the pair yet."""


class Forecaster:
    """Answers forecasts for the configured pairs."""

    def __init__(self, settings: Settings | None = None, pairs: PairsConfig | None = None) -> None:
        self.settings = settings or get_settings()
        self.pairs = pairs or load_pairs(self.settings.pairs)
        bentoml_store(self.settings)
        self._store = featurestore.feature_store(self.settings)
        self._sessions: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def predict(self, symbol: str) -> dict[str, Any]:
        """The next-candle forecast for a pair (symbol ``BTC/USD`` or key ``btc_usd``)."""
        pair = self._pair(symbol)
        session, meta, tag = self._model(pair)
        columns = [*meta["features"], "close", "candle_ts"]
        values = featurestore.online_features(self._store, pair.slug, pair.timeframe, columns)
        missing = [c for c in columns if values.get(c) is None]
        if missing:
            raise NotReadyError(
                f"{pair.symbol}: no online features ({', '.join(missing[:3])} missing); "
                "materialize the pair first"
            )
        row = np.array([[values[c] for c in meta["features"]]], dtype=np.float32)
        predicted = float(session.run(None, {session.get_inputs()[0].name: row})[0].reshape(-1)[0])
        return self._answer(pair, meta, tag, values, predicted)

    def status(self) -> dict[str, Any]:
        """What is deployed for each pair (for the health endpoint)."""
        deployed = {}
        for pair in self.pairs.pairs:
            try:
                _, meta, tag = self._model(pair)
                deployed[pair.symbol] = {
                    "model_version": meta["version"],
                    "kind": meta["kind"],
                    "bento_model": tag,
                }
            except NotReadyError as exc:
                deployed[pair.symbol] = {"error": str(exc)}
        return {"status": "ok", "pairs": deployed}

    def _pair(self, symbol: str) -> PairConfig:
        try:
            return self.pairs.get(symbol)
        except KeyError as exc:
            raise UnknownPairError(exc.args[0]) from None

    def _model(self, pair: PairConfig) -> tuple[Any, dict[str, Any], str]:
        import bentoml

        try:
            model = bentoml.models.get(f"{bento_model_name(pair)}:latest")
        except bentoml.exceptions.NotFound:
            raise NotReadyError(f"{pair.symbol}: no model deployed yet") from None
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

    @staticmethod
    def _answer(
        pair: PairConfig, meta: dict[str, Any], tag: str, values: dict[str, Any], predicted: float
    ) -> dict[str, Any]:
        candle_ts = int(values["candle_ts"])
        step = timeframe_ms(pair.timeframe)
        answer = {
            "pair": pair.symbol,
            "exchange": pair.exchange,
            "timeframe": pair.timeframe,
            "predicted_return": predicted,
            "predicted_price": float(values["close"]) * float(np.exp(predicted)),
            "last_close": float(values["close"]),
            "feature_timestamp": _iso(candle_ts + step),
            "forecast_for": _iso(candle_ts + 2 * step),
            "model": {
                "name": meta["model_name"],
                "version": meta["version"],
                "kind": meta["kind"],
                "bento_model": tag,
            },
            "served_at": datetime.now(UTC).isoformat(),
        }
        if meta["kind"] == "persistence":
            answer["note"] = PERSISTENCE_NOTE
        return answer


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
