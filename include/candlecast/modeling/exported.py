"""An exported model: its card and the export's own facts, as written beside ``model.onnx``.

Light on purpose (no MLflow, no numpy): the service and monitoring load exports with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from candlecast.errors import TamperedModelError
from candlecast.modeling.card import ModelCard

#: The export's record beside ``model.onnx``: the card and the export's own facts.
EXPORT_FILE = "export.json"
#: What an export by an older candlecast left there instead (no card: exported again).
LEGACY_FILE = "metadata.json"


class ExportedModel(BaseModel):
    """An exported model: its card (also in the ONNX file's metadata) and the export's own
    facts (parity, the ONNX file's hash and path). What deploy, the service and monitoring
    read; written as ``export.json`` beside ``model.onnx``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    card: ModelCard
    #: Empty only in a record that lost it: refused on load.
    onnx_sha256: str = ""
    path: str
    parity_max_abs_diff: float
    parity_max_rel_diff: float
    parity_rows: int
    #: Why this model is exported instead of the decision's winner (whose export failed its
    #: parity check), None when it is the winner.
    fallback: str | None = None

    @property
    def version(self) -> str:
        return str(self.card.version)

    @property
    def kind(self) -> str:
        return self.card.kind

    @property
    def model_name(self) -> str:
        return self.card.registered_model

    @property
    def run_id(self) -> str:
        return self.card.run_id or ""

    @property
    def features(self) -> list[str]:
        return list(self.card.features)

    @property
    def window(self) -> int:
        return self.card.window

    @property
    def note(self) -> str | None:
        return self.card.note

    @property
    def interval_coverage(self) -> float | None:
        return self.card.interval_coverage

    @property
    def interval_half_width(self) -> float | None:
        return self.card.interval_half_width

    @classmethod
    def load(cls, folder: Path) -> ExportedModel:
        """An export written earlier, its ONNX file checked against its recorded hash.

        Raises:
            TamperedModelError: ``model.onnx`` changed since it was exported.
            FileNotFoundError: nothing (or an older candlecast's export) there.
        """
        if not (folder / EXPORT_FILE).exists() and (folder / LEGACY_FILE).exists():
            raise FileNotFoundError(
                f"{folder}: exported by an older candlecast ({LEGACY_FILE}, no model card)"
            )
        exported = cls.model_validate_json((folder / EXPORT_FILE).read_text())
        actual = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
        if actual != exported.onnx_sha256:
            raise TamperedModelError(
                f"{folder / 'model.onnx'}: sha256 {actual[:12]}… differs from the recorded "
                f"onnx_sha256 {exported.onnx_sha256[:12]}…; delete the folder to export again"
            )
        return exported

    def write(self, folder: Path) -> None:
        (folder / EXPORT_FILE).write_text(self.model_dump_json(indent=2))
