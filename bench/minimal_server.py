"""The baseline of bench_serving.py: a minimal FastAPI + onnxruntime server over the same
deployed model, reading the same Feast online store on every request (what a first service
usually looks like). Run: uvicorn bench.minimal_server:app (CANDLECAST_* of the world, and
BENCH_MODEL_DIR = the BentoML model folder holding model.onnx and export.json)."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

from candlecast.config import load_pairs
from candlecast.features import featurestore
from candlecast.settings import get_settings

FOLDER = Path(os.environ["BENCH_MODEL_DIR"])
META = json.loads((FOLDER / "export.json").read_text())["card"]
SESSION = ort.InferenceSession(str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"])
INPUT = SESSION.get_inputs()[0].name
STORE = featurestore.feature_store(online_only=True)  # as the service's workers
PAIRS = load_pairs(get_settings().pairs)
app = FastAPI()


class PredictRequest(BaseModel):
    pair: str


class RowsRequest(BaseModel):
    pair: str
    features: list[str]
    rows: list[list[float]]


@app.post("/predict")
def predict(request: PredictRequest) -> dict:
    stream = PAIRS.resolve(request.pair).stream
    values = featurestore.online_features(STORE, stream, [*META["features"], "close"])
    x = np.array([[values[c] for c in META["features"]]], dtype=np.float32)
    predicted = float(SESSION.run(None, {INPUT: x})[0].reshape(-1)[0])
    return {"pair": request.pair, "predicted_return": predicted, "last_close": values["close"]}


@app.post("/predict_batch")
def predict_batch(request: RowsRequest) -> dict:
    x = np.asarray(request.rows, dtype=np.float32)
    return {"predicted_return": SESSION.run(None, {INPUT: x})[0].reshape(-1).tolist()}


# Same start-up as the service: one online read (Feast's lazy imports happen now), then the
# long-lived objects are frozen out of the garbage collector's full collections.
featurestore.online_features(STORE, PAIRS.pairs[0].stream, [*META["features"], "close"])
gc.collect()
gc.freeze()
