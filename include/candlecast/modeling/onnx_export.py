"""Export the champion to ONNX and check that ONNX gives the same forecasts.

Writes ``<home>/models/<stream key>/v<version>/model.onnx`` and ``metadata.json`` (stream,
feature list, window, version, kind, parity, serving note). Works for any model kind through
its plug-in; a parity failure raises, so nothing downstream deploys it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.errors import ParityError, TamperedModelError, UnknownVersionError
from candlecast.evaluation.metrics import conformal_half_width
from candlecast.modeling import registry
from candlecast.modeling.datasets import holdout_inputs
from candlecast.modeling.kinds import get_kind
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

#: Nominal coverage of the forecast intervals served beside each forecast.
INTERVAL_COVERAGE = 0.9
#: Largest ONNX vs native difference relative to the largest native forecast.
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportedModel:
    stream: str
    pair: str
    exchange: str
    timeframe: str
    model_name: str
    version: str
    kind: str
    run_id: str
    features: list[str]
    parity_max_abs_diff: float
    parity_max_rel_diff: float
    parity_rows: int
    onnx_sha256: str
    path: str
    window: int = 1
    note: str | None = None
    interval_coverage: float | None = None
    interval_half_width: float | None = None
    #: Why this model is exported instead of the decision's winner (whose export failed its
    #: parity check), None when it is the winner.
    fallback: str | None = None

    @classmethod
    def load(cls, folder: Path) -> ExportedModel:
        """An export written earlier, its ONNX file checked against its recorded hash.

        Raises:
            TamperedModelError: ``model.onnx`` changed since it was exported.
        """
        exported = cls(**json.loads((folder / "metadata.json").read_text()))
        actual = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
        if actual != exported.onnx_sha256:
            raise TamperedModelError(
                f"{folder / 'model.onnx'}: sha256 {actual[:12]}… differs from the recorded "
                f"onnx_sha256 {exported.onnx_sha256[:12]}…; delete the folder to export again"
            )
        return exported


def export_champion(pair: PairConfig, settings: Settings | None = None) -> ExportedModel:
    """Convert the stream's champion to ONNX, check parity on its holdout, write it out.

    Raises:
        NoChampionError: nothing to export yet.
        ParityError: ONNX and native forecasts differ beyond the tolerance.
    """
    from mlflow import MlflowClient

    settings = settings or get_settings()
    registry.configure(settings)
    champion = registry.require_champion(MlflowClient(), pair.stream)
    return export_version(pair, str(champion.version), settings)


def export_version(
    pair: PairConfig, version_id: str, settings: Settings | None = None
) -> ExportedModel:
    """Convert one registered version of the stream's model to ONNX, check parity on its
    holdout and write it to ``models/<stream>/v<version>/`` (kept when already there).

    Raises:
        UnknownVersionError: the stream's model has no such version.
        ParityError: ONNX and native forecasts differ beyond the tolerance.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    registry.configure(settings)
    client = MlflowClient()
    stream = pair.stream
    try:
        version = client.get_model_version(stream.registered_model, version_id)
    except MlflowException:
        raise UnknownVersionError(
            f"{stream.registered_model} has no version {version_id!r}"
        ) from None
    run_id = version.run_id
    if run_id is None:
        raise UnknownVersionError(f"{version.name} v{version.version} has no training run")
    folder = stream.model_dir(settings.paths.models, version.version)
    if (folder / "metadata.json").exists() and (folder / "model.onnx").exists():
        log.info("%s v%s already exported to %s", stream.registered_model, version.version, folder)
        return ExportedModel.load(folder)
    kind = get_kind(version.tags.get("kind", ""))
    features = registry.run_features(client, run_id)
    model = kind.load(f"models:/{version.name}/{version.version}", features)
    holdout = registry.load_holdout(run_id)
    scored = holdout_inputs(holdout, features, model.window, timeframe_ms(pair.timeframe))
    x = scored.x
    graph = model.to_onnx()
    info = {"stream": stream.key, "model_name": version.name, "version": str(version.version)}
    _describe(graph, info | {"kind": kind.name, "window": str(model.window)}, features)
    payload = graph.SerializeToString()
    native = model.predict(x)
    same_kind = client.get_run(run_id).data.tags.get("kind") == kind.name
    half_width = interval_half_width(holdout, scored.target - native, same_kind)
    diff, relative = parity(run_onnx(payload, x), native)
    if not (diff <= settings.parity_tolerance and relative <= RELATIVE_TOLERANCE):
        raise ParityError(
            f"{stream.registered_model} v{version.version}: ONNX differs from {kind.name} by "
            f"{diff:.3g} ({relative:.3g} relative; tolerances {settings.parity_tolerance:g} "
            f"absolute, {RELATIVE_TOLERANCE:g} relative) on {len(x)} holdout rows"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(payload)
    exported = ExportedModel(
        stream=stream.key,
        pair=stream.symbol,
        exchange=stream.exchange,
        timeframe=stream.timeframe,
        model_name=stream.registered_model,
        version=str(version.version),
        kind=kind.name,
        run_id=run_id,
        features=list(features),
        parity_max_abs_diff=diff,
        parity_max_rel_diff=relative,
        parity_rows=len(x),
        onnx_sha256=hashlib.sha256(payload).hexdigest(),
        path=str(folder / "model.onnx"),
        window=model.window,
        note=kind.serving_note,
        interval_coverage=INTERVAL_COVERAGE,
        interval_half_width=half_width,
    )
    (folder / "metadata.json").write_text(json.dumps(asdict(exported), indent=2))
    client.set_model_version_tag(
        version.name, version.version, "onnx_parity_max_abs_diff", f"{diff:.3g}"
    )
    log.info("exported %s v%s to %s (parity %.3g)", version.name, version.version, folder, diff)
    return exported


def parity(onnx: np.ndarray, native: np.ndarray) -> tuple[float, float]:
    """Largest absolute difference, and that difference relative to the largest native
    forecast (returns are tiny numbers, so an absolute bound alone says little)."""
    if not len(native):
        return 0.0, 0.0
    diff = float(np.max(np.abs(onnx - native)))
    scale = float(np.max(np.abs(native)))
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _describe(graph: Any, info: dict[str, str], features: list[str]) -> None:
    """What serving needs, in the ONNX file itself: stream, version, kind, window and the
    ordered feature list (a scaler, where a kind has one, is part of the graph)."""
    del graph.metadata_props[:]
    for key, value in {**info, "features": json.dumps(features)}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = f"candlecast.{key}", value


def interval_half_width(
    holdout: pd.DataFrame, residuals: np.ndarray, holdout_fit: bool
) -> float | None:
    """Split-conformal half-width of the forecast return at :data:`INTERVAL_COVERAGE`, from
    out-of-sample residuals: the holdout fit's forecasts logged with the holdout when the
    champion is the run's own kind (the served model was refitted on the holdout, so its own
    residuals there are in-sample), else the champion's (a baseline that learns nothing)."""
    if holdout_fit:
        rows = holdout[holdout["holdout"]]
        residuals = (rows["target"] - rows["predicted"]).to_numpy()
    try:
        return conformal_half_width(residuals, INTERVAL_COVERAGE)
    except ValueError:
        return None  # too few rows for the coverage


def run_onnx(payload: bytes, x: np.ndarray) -> np.ndarray:
    """Forecasts of an ONNX model (bytes) for rows ``x``, as float64 of shape (n,)."""
    import onnxruntime as ort

    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x.astype(np.float32)})[0], dtype=np.float64).reshape(
        -1
    )
