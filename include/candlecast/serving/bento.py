"""Package the prediction service as a Bento: the service, the candlecast package, the pair
config and every stream's deployed model, ready for ``bentoml containerize``.

Models change at run time (each deploy adds one), so the Bento is built from what is deployed
now: :func:`build` lists the newest deployed model of every configured stream and names them
in a generated ``bentofile.yaml``; BentoML copies them into the Bento, whose own model store
the service then reads. Features still come from the Feast online store the environment
points at (``CANDLECAST_ONLINE_STORE=redis`` in production).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from candlecast.config import load_pairs
from candlecast.errors import NotReadyError
from candlecast.serving.deploy import bentoml_store
from candlecast.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

BENTO_NAME = "candlecast"
#: Where the pair config sits inside the Bento (CANDLECAST_PAIRS in the container).
CONFIG_IN_BENTO = "config/pairs.yaml"


def deployed_models(settings: Settings | None = None) -> list[str]:
    """The tag of the newest deployed model of every configured stream.

    Raises:
        NotReadyError: a configured stream has nothing deployed yet.
    """
    settings = settings or get_settings()
    bentoml_store(settings)
    import bentoml

    tags, missing = [], []
    for pair in load_pairs(settings.pairs).pairs:
        try:
            tags.append(str(bentoml.models.get(f"{pair.stream.bento_model}:latest").tag))
        except bentoml.exceptions.NotFound:
            missing.append(pair.stream.label)
    if missing:
        raise NotReadyError(
            f"nothing deployed yet for {', '.join(missing)}: run their train DAGs first"
        )
    return tags


def bentofile(models: list[str]) -> dict[str, object]:
    """The build spec: the service module, the package, the config, the models and the
    locked Python requirements (PyTorch's CPU wheels)."""
    return {
        "service": "service:Candlecast",
        "name": BENTO_NAME,
        "labels": {"project": "candlecast"},
        "include": ["service.py", "candlecast/**", "config/**", "requirements.lock"],
        "exclude": ["**/__pycache__", "**/*.pyc"],
        "models": models,
        "python": {
            "requirements_txt": "requirements.lock",
            "extra_index_url": ["https://download.pytorch.org/whl/cpu"],
            "lock_packages": False,
        },
        "envs": [
            {"name": "CANDLECAST_PAIRS", "value": f"/home/bentoml/bento/src/{CONFIG_IN_BENTO}"},
            {"name": "CANDLECAST_HOME", "value": "/var/lib/candlecast"},
            {"name": "CANDLECAST_SERVICE_HOST", "value": "0.0.0.0"},  # inside the container
        ],
        "docker": {"python_version": "3.11"},
    }


def build(settings: Settings | None = None) -> str:
    """Build the Bento into the BentoML store under the data directory; returns its tag.

    Raises:
        NotReadyError: a configured stream has nothing deployed yet.
        RuntimeError: ``bentoml build`` failed (its output is in the message).
    """
    settings = settings or get_settings()
    models = deployed_models(settings)
    with tempfile.TemporaryDirectory(prefix="candlecast-bento-") as tmp:
        context = Path(tmp)
        shutil.copy2(REPO_ROOT / "serving" / "service.py", context / "service.py")
        shutil.copytree(
            REPO_ROOT / "include" / "candlecast",
            context / "candlecast",
            ignore=shutil.ignore_patterns("__pycache__", "testing"),
        )
        (context / "config").mkdir()
        shutil.copy2(settings.pairs, context / CONFIG_IN_BENTO)
        shutil.copy2(REPO_ROOT / "requirements.lock", context / "requirements.lock")
        spec = context / "bentofile.yaml"
        spec.write_text(yaml.safe_dump(bentofile(models), sort_keys=False))
        env = dict(
            os.environ, BENTOML_HOME=str(settings.paths.bentoml), BENTOML_DO_NOT_TRACK="True"
        )
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "bentoml"),
                "build",
                str(context),
                "-f",
                str(spec),
                "-o",
                "tag",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise RuntimeError(f"bentoml build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    log.info("built Bento %s with %d models", tag, len(models))
    return tag
