"""Where the BentoML model store lives, and how a model file is read from it (a light module:
the service's workers import it, and :mod:`.deploy`, which also reads MLflow, re-exports it
for the pipeline)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from candlecast.errors import TamperedModelError
from candlecast.settings import Settings, get_settings


def bentoml_store(settings: Settings | None = None) -> Path:
    """Point BentoML at the model store under the data directory: before its first use
    through ``BENTOML_HOME``, after it by moving BentoML's stores too (it resolves its home
    once per process; a process that serves or deploys for a second data directory, as a
    test session does, would otherwise write into the first one's store)."""
    settings = settings or get_settings()
    home = settings.paths.bentoml
    os.environ["BENTOML_HOME"] = str(home)
    if "bentoml" in sys.modules:
        _move_stores(home)
    return home


def _move_stores(home: Path) -> None:
    """BentoML's model and bento stores under ``home`` from now on in this process."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    if Path(BentoMLContainer.bentoml_home.get()) == home:
        return
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.models import ModelStore

    folders = {name: home / name for name in ("bentos", "models", "envs", "tmp")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.bento_store_dir.set(str(folders["bentos"]))
    BentoMLContainer.model_store_dir.set(str(folders["models"]))
    BentoMLContainer.env_store_dir.set(str(folders["envs"]))
    BentoMLContainer.tmp_bento_store_dir.set(str(folders["tmp"]))
    BentoMLContainer.bento_store.set(BentoStore(str(folders["bentos"])))
    BentoMLContainer.model_store.set(ModelStore(str(folders["models"])))
    BentoMLContainer.tmp_bento_store.set(BentoStore(str(folders["tmp"])))


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
