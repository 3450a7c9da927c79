"""Where the BentoML model store lives (a light module: the service's workers import it, and
:mod:`.deploy`, which also reads MLflow, re-exports it for the pipeline)."""

from __future__ import annotations

import os
from pathlib import Path

from candlecast.settings import Settings, get_settings


def bentoml_store(settings: Settings | None = None) -> Path:
    """Point BentoML at the model store under the data directory (before first use)."""
    settings = settings or get_settings()
    os.environ["BENTOML_HOME"] = str(settings.paths.bentoml)
    return settings.paths.bentoml
