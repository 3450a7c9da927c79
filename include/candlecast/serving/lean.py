"""What a serving worker holds: ONNX sessions, features and the web stack; no PyTorch and no
training libraries.

Feast imports PyTorch whenever it is installed (``feast.torch_wrapper``, for tensor outputs the
service never asks for) and falls back cleanly when the import fails. The service makes that
import fail before anything imports Feast (:func:`keep_torch_out`), which saves the worker the
torch libraries (26 mapped, about 300 MB resident, measured in issue 18); the rest of the
service's import chain avoids the training modules by construction (an import-linter
contract). :func:`process_facts` reports what a running worker holds, for ``/health`` and the
tests that ask the running service rather than their own process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Libraries a serving worker never needs: training, export, validation, monitoring, Airflow.
TRAINING_LIBRARIES = (
    "airflow",
    "evidently",
    "great_expectations",
    "lightgbm",
    "mlflow",
    "onnxmltools",
    "skl2onnx",
    "sklearn",
    "talib",
    "torch",
)


def keep_torch_out() -> None:
    """Make ``import torch`` fail in this process, so libraries that use it only when present
    (Feast) load without it. ``None`` in :data:`sys.modules` is Python's documented way:
    ``import`` raises ImportError and ``importlib.util.find_spec`` answers None. Call it before
    importing Feast; a process that already holds torch keeps it."""
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]


def loaded_training_libraries() -> list[str]:
    """The :data:`TRAINING_LIBRARIES` this process has imported."""
    return sorted(name for name in TRAINING_LIBRARIES if sys.modules.get(name) is not None)


def resident_bytes() -> int:
    """This process's resident set size (0 where ``/proc`` is absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def process_facts() -> dict[str, Any]:
    """The worker's pid, resident bytes, loaded training libraries and whether it holds Feast
    (``/health``; a service's workers read features through its feature reader process)."""
    return {
        "pid": os.getpid(),
        "rss_bytes": resident_bytes(),
        "training_libraries": loaded_training_libraries(),
        "feast": sys.modules.get("feast") is not None,
    }
