"""Export the champion to ONNX and check that ONNX gives the same forecasts.

Writes ``<home>/models/<pair>/v<version>/model.onnx`` and ``metadata.json`` (feature list,
version, kind, parity). A parity failure raises, so nothing downstream deploys it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from candlecast import tracking
from candlecast.config import PairConfig
from candlecast.errors import PermanentError
from candlecast.modeling import model_inputs
from candlecast.settings import Settings, get_settings

log = logging.getLogger(__name__)

INPUT_NAME = "features"
#: What onnxmltools converts to and the pinned onnxruntime reads (IR 8 covers opset 15).
TARGET_OPSET = 15
IR_VERSION = 8


class ParityError(PermanentError):
    """ONNX outputs differ from the native model's beyond the tolerance."""


@dataclass(frozen=True)
class ExportedModel:
    pair: str
    timeframe: str
    model_name: str
    version: str
    kind: str
    run_id: str
    features: list[str]
    parity_max_abs_diff: float
    parity_rows: int
    onnx_sha256: str
    path: str

    @classmethod
    def load(cls, folder: Path) -> ExportedModel:
        return cls(**json.loads((folder / "metadata.json").read_text()))


def export_champion(pair: PairConfig, settings: Settings | None = None) -> ExportedModel:
    """Convert the pair's champion to ONNX, check parity on its holdout, write it out."""
    import mlflow
    from mlflow import MlflowClient

    settings = settings or get_settings()
    tracking.configure(settings)
    client = MlflowClient()
    name = tracking.model_name(pair)
    version = client.get_model_version_by_alias(name, tracking.CHAMPION)
    folder = settings.paths.models / pair.key / f"v{version.version}"
    if (folder / "metadata.json").exists() and (folder / "model.onnx").exists():
        log.info("%s v%s already exported to %s", name, version.version, folder)
        return ExportedModel.load(folder)
    kind = version.tags.get("kind", "lightgbm")
    run_id = version.run_id
    holdout = tracking.load_holdout(run_id)
    features = client.get_run(run_id).data.params["features"].split(",")
    x = model_inputs(holdout, features)
    if kind == "persistence":
        onnx_model = persistence_onnx(len(features))
        native = np.zeros(len(x))
    else:
        booster = mlflow.lightgbm.load_model(f"models:/{name}/{version.version}")
        onnx_model = lightgbm_onnx(booster, len(features))
        native = np.asarray(booster.predict(x), dtype=np.float64)
    onnx_out = run_onnx(onnx_model.SerializeToString(), x)
    diff = float(np.max(np.abs(onnx_out - native))) if len(x) else 0.0
    if not diff <= settings.parity_tolerance:
        raise ParityError(
            f"{name} v{version.version}: ONNX differs from {kind} by {diff:.3g} "
            f"(tolerance {settings.parity_tolerance:g}) on {len(x)} holdout rows"
        )
    folder.mkdir(parents=True, exist_ok=True)
    payload = onnx_model.SerializeToString()
    (folder / "model.onnx").write_bytes(payload)
    exported = ExportedModel(
        pair.symbol,
        pair.timeframe,
        name,
        str(version.version),
        kind,
        run_id,
        list(features),
        diff,
        len(x),
        hashlib.sha256(payload).hexdigest(),
        str(folder / "model.onnx"),
    )
    (folder / "metadata.json").write_text(json.dumps(asdict(exported), indent=2))
    client.set_model_version_tag(name, version.version, "onnx_parity_max_abs_diff", f"{diff:.3g}")
    log.info("exported %s v%s to %s (parity %.3g)", name, version.version, folder, diff)
    return exported


def lightgbm_onnx(model: Any, n_features: int) -> Any:
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    converted = convert_lightgbm(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        zipmap=False,
    )
    converted.ir_version = min(converted.ir_version, IR_VERSION)
    return converted


def persistence_onnx(n_features: int) -> Any:
    """An ONNX graph that answers a log return of 0 for every row ("no change")."""
    from onnx import TensorProto, helper

    zeros = helper.make_tensor("zeros", TensorProto.FLOAT, [n_features, 1], [0.0] * n_features)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [INPUT_NAME, "zeros"], ["variable"])],
        "persistence",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=[zeros],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)], ir_version=IR_VERSION
    )


def run_onnx(payload: bytes, x: np.ndarray) -> np.ndarray:
    """Forecasts of an ONNX model (bytes) for rows ``x``, as float64 of shape (n,)."""
    import onnxruntime as ort

    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x.astype(np.float32)})[0], dtype=np.float64).reshape(
        -1
    )
