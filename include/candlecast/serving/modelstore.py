"""Where the BentoML model store lives, and how a model file is read from it (a light module:
the service's workers import it, and :mod:`.deploy`, which also reads MLflow, re-exports it
for the pipeline)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from candlecast.errors import TamperedModelError
from candlecast.settings import Settings, get_settings


def bentoml_store(settings: Settings | None = None) -> Path:
    """Point BentoML at the model store under the data directory (before first use)."""
    settings = settings or get_settings()
    os.environ["BENTOML_HOME"] = str(settings.paths.bentoml)
    return settings.paths.bentoml


def verified_bytes(path: Path, recorded: object, name: str) -> bytes:
    """The bytes of a model file whose sha256 is the one recorded at export (``recorded``),
    read once, so what is checked is what is loaded.

    Raises:
        TamperedModelError: no hash is recorded, or the file's differs; ``name`` names the
            file in the message (callers pass one without the data directory).
    """
    payload = path.read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    if not isinstance(recorded, str) or not recorded:
        raise TamperedModelError(f"{name}: no recorded onnx_sha256 to check it against")
    if actual != recorded:
        raise TamperedModelError(
            f"{name}: sha256 {actual[:12]}… differs from the recorded onnx_sha256 "
            f"{recorded[:12]}…; refusing to load it"
        )
    return payload


def verified_session(path: Path, recorded: object, name: str) -> Any:
    """An ONNX Runtime session on the CPU for a model file checked by :func:`verified_bytes`.

    One intra-op and one inter-op thread, sequential: a forecast is a few small rows, where
    thread hand-offs cost more than they save, and a worker serves many streams side by side.

    Raises:
        TamperedModelError: as :func:`verified_bytes`.
    """
    import onnxruntime as ort

    payload = verified_bytes(path, recorded, name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
