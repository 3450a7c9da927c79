"""Export the champion to ONNX and check that ONNX gives the same forecasts.

Writes ``<home>/models/<stream key>/v<version>/model.onnx``, the version's
:class:`~candlecast.modeling.card.ModelCard` in its metadata, and ``export.json``
(:class:`ExportedModel`: the card, parity and the file's hash). Works for any model kind
through its plug-in; a parity failure raises, so nothing downstream deploys it.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.errors import ParityError, UnknownVersionError
from candlecast.evaluation.metrics import conformal_half_width
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling import registry
from candlecast.modeling.datasets import holdout_inputs
from candlecast.modeling.exported import EXPORT_FILE, LEGACY_FILE, ExportedModel
from candlecast.modeling.kinds import get_kind
from candlecast.modeling.version_card import run_card, version_card
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

__all__ = ["EXPORT_FILE", "ExportedModel", "export_champion", "export_version"]

#: Nominal coverage of the forecast intervals served beside each forecast.
INTERVAL_COVERAGE = 0.9
#: Largest ONNX vs native difference relative to the largest native forecast.
RELATIVE_TOLERANCE = 1e-4


def export_champion(pair: PairConfig, settings: Settings | None = None) -> ExportedModel:
    """Convert the stream's champion to ONNX, check parity on its holdout, write it out.

    Raises:
        NoChampionError: nothing to export yet.
        ParityError: ONNX and native forecasts differ beyond the tolerance.
    """
    settings = settings or get_settings()
    registry.configure(settings)
    champion = registry.require_champion(registry.client(), pair.stream)
    return export_version(pair, str(champion.version), settings)


def export_version(
    pair: PairConfig, version_id: str, settings: Settings | None = None
) -> ExportedModel:
    """Convert one registered version of the stream's model to ONNX, check parity on its
    holdout and write it to ``models/<stream>/v<version>/`` (kept when already there): the
    ONNX file carries the version's card (its run's, with the version, the gate's decision
    and the interval), ``export.json`` the card and the export's facts.

    Raises:
        UnknownVersionError: the stream's model has no such version.
        ParityError: ONNX and native forecasts differ beyond the tolerance.
    """
    settings = settings or get_settings()
    registry.configure(settings)
    client = registry.client()
    stream = pair.stream
    try:
        version = client.get_model_version(stream.registered_model, version_id)
    except registry.MlflowException:
        raise UnknownVersionError(
            f"{stream.registered_model} has no version {version_id!r}"
        ) from None
    run_id = version.run_id
    if run_id is None:
        raise UnknownVersionError(f"{version.name} v{version.version} has no training run")
    folder = stream.model_dir(settings.paths.models, version.version)
    if (folder / EXPORT_FILE).exists() and (folder / "model.onnx").exists():
        log.info("%s v%s already exported to %s", stream.registered_model, version.version, folder)
        return ExportedModel.load(folder)
    card = version_card(pair.stream, version)
    kind = get_kind(card.kind)
    model = kind.load(f"models:/{version.name}/{version.version}", card.features)
    holdout = registry.load_holdout(run_id)
    scored = holdout_inputs(holdout, card.features, model.window, timeframe_ms(pair.timeframe))
    x = scored.x
    native = model.predict(x)
    # the run's own card: a baseline registered on a learned kind's run (before baselines had
    # runs of their own) does not own that run's holdout forecasts
    same_kind = run_card(pair.stream, client.get_run(run_id)).kind == kind.name
    card = card.model_copy(
        update={
            "interval_coverage": INTERVAL_COVERAGE,
            "interval_half_width": interval_half_width(holdout, scored.target - native, same_kind),
        }
    )
    payload = card.embed(model.to_onnx()).SerializeToString()
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
        card=card,
        onnx_sha256=hashlib.sha256(payload).hexdigest(),
        path=str(folder / "model.onnx"),
        parity_max_abs_diff=diff,
        parity_max_rel_diff=relative,
        parity_rows=len(x),
    )
    exported.write(folder)
    (folder / LEGACY_FILE).unlink(missing_ok=True)
    client.set_model_version_tag(version.name, version.version, keys.ONNX_PARITY, f"{diff:.3g}")
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
