"""Deploy an exported champion into the BentoML model store that the service serves from."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

from candlecast.config import PairConfig
from candlecast.modeling.onnx_export import EXPORT_FILE, ExportedModel
from candlecast.serving.modelstore import bentoml_store as bentoml_store
from candlecast.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: The BentoML model metadata key of the ONNX file's hash (a redeploy of the same bytes is
#: a no-op).
SHA256_KEY = "onnx_sha256"


def deploy(pair: PairConfig, exported: ExportedModel, settings: Settings | None = None) -> str:
    """Save the ONNX champion (its card inside) and its ``export.json`` as the newest BentoML
    model of the stream; returns its tag.

    Deploying the same ONNX bytes again keeps the current tag (idempotent).
    """
    settings = settings or get_settings()
    _store(settings)
    import bentoml

    name = pair.stream.bento_model
    current = _latest(bentoml, name)
    if current is not None and current.info.metadata.get(SHA256_KEY) == exported.onnx_sha256:
        log.info("%s already deployed as %s", exported.model_name, current.tag)
        return str(current.tag)
    folder = Path(exported.path).parent
    labels = {"stream": pair.key, "kind": exported.kind, "version": exported.version}
    # BentoML's own listing (``bentoml models list``) shows these; the card is the record
    metadata = {
        "version": exported.version,
        "kind": exported.kind,
        SHA256_KEY: exported.onnx_sha256,
    }
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        shutil.copy2(folder / "model.onnx", model.path_of("model.onnx"))
        Path(model.path_of(EXPORT_FILE)).write_text(exported.model_dump_json(indent=2))
    log.info("deployed %s v%s as %s", exported.model_name, exported.version, model.tag)
    return str(model.tag)


def _store(settings: Settings | None) -> None:
    """Point BentoML at the model store, and import ``bentoml.models`` without its
    import-time DeprecationWarnings: loading it loads BentoML's cloud deployment module, which
    compiles its ignore patterns with pathspec's deprecated ``gitwildmatch`` name, two warning
    lines in a deploy task's log. (Not in :func:`bentoml_store`: the service's workers never
    pay for that module.)"""
    bentoml_store(settings)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="GitWildMatchPattern", category=DeprecationWarning
        )
        import bentoml.models  # noqa: F401


def _latest(bentoml: Any, name: str) -> Any | None:
    try:
        return bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return None


def deployed_tag(pair: PairConfig, settings: Settings | None = None) -> str | None:
    """The tag of the stream's model the service serves now (None before any deploy)."""
    _store(settings)
    import bentoml

    current = _latest(bentoml, pair.stream.bento_model)
    return str(current.tag) if current is not None else None


def undeploy(pair: PairConfig, tag: str, settings: Settings | None = None) -> None:
    """Remove a deployment that failed its checks, so the previous one is served again."""
    _store(settings)
    import bentoml

    if not tag.startswith(f"{pair.stream.bento_model}:"):
        raise ValueError(f"{tag} is not a deployment of {pair.stream.label}")
    bentoml.models.delete(tag)
    log.warning("%s: undeployed %s", pair.stream.label, tag)
