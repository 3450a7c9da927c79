"""A deployed champion loaded for serving: its ONNX session, the file checked against the
sha256 recorded at export, and its model card (what the model is)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from candlecast.modeling.card import ModelCard
from candlecast.modeling.exported import EXPORT_FILE, ExportedModel
from candlecast.names import Stream
from candlecast.serving.modelstore import verified_session


class ModelLoadError(RuntimeError):
    """A deployed model that cannot be loaded or fails its smoke forecast (not switched to)."""


@dataclass(frozen=True)
class LoadedModel:
    """An ONNX session and the export it came from (its card: what the model is)."""

    tag: str
    session: Any
    input_name: str
    exported: ExportedModel
    deployed_at: str | None

    @property
    def card(self) -> ModelCard:
        return self.exported.card

    @property
    def features(self) -> list[str]:
        return list(self.card.features)

    @property
    def window(self) -> int:
        return self.card.window

    def run(self, x: np.ndarray) -> np.ndarray:
        """Forecast log returns for input rows (float32, shape (n, window * features))."""
        out = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


def load_model(stored: Any) -> LoadedModel:
    """An ONNX session (see :func:`~candlecast.serving.modelstore.verified_session`) for a
    BentoML model of the store, its file checked against the sha256 recorded at export and
    its embedded card against the export's.

    Raises:
        ModelLoadError: deployed by an older candlecast (no card), or a card that differs.
    """
    record = Path(stored.path_of(EXPORT_FILE))
    if not record.exists():
        raise ModelLoadError(_redeploy_hint(stored))
    exported = ExportedModel.model_validate_json(record.read_text())
    # checked on every load: a file changed after export (a constant edited) still parses
    path = Path(stored.path_of("model.onnx"))
    session = verified_session(path, exported.onnx_sha256, f"{stored.tag}/model.onnx")
    if ModelCard.from_onnx(session) != exported.card:
        raise ModelLoadError(f"{stored.tag}: the card in model.onnx differs from {EXPORT_FILE}")
    created = getattr(stored.info, "creation_time", None)
    return LoadedModel(
        tag=str(stored.tag),
        session=session,
        input_name=session.get_inputs()[0].name,
        exported=exported,
        deployed_at=created.isoformat() if created else None,
    )


def _redeploy_hint(stored: Any) -> str:
    """Why a model deployed by an older candlecast (``metadata.json``, no card) is not
    served, and the command that exports and deploys it again with its card."""
    labels = stored.info.labels
    try:
        stream = Stream.from_key(str(labels.get("stream", "")))
    except ValueError:
        return f"{stored.tag}: deployed by an older candlecast (no model card); retrain it"
    return (
        f"{stored.tag}: deployed by an older candlecast (no model card); export and deploy it "
        f"again: candlecast promote --pair {stream.symbol} --exchange {stream.exchange} "
        f"--timeframe {stream.timeframe} --version {labels.get('version', '<version>')} "
        "--reason 're-export with its model card'"
    )


def model_info(model: LoadedModel) -> dict[str, str]:
    card = model.card
    return {
        "name": card.registered_model,
        "version": str(card.version),
        "kind": card.kind,
        "bento_model": model.tag,
    }
