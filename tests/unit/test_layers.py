"""The import-linter contracts hold on the package, and each one fails on a planted violation
(in a copy of the package, so the real tree is never touched)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "include")}
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "include" / "candlecast", tmp_path / "include" / "candlecast")
    return tmp_path


def broken(output: str) -> list[str]:
    return [m.strip() for m in re.findall(r"^(.*?) BROKEN\b", output, flags=re.M)]


def test_the_package_keeps_every_contract(copy):
    out = lint(copy)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "Contracts: 7 kept, 0 broken." in out.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("data/gaps.py", "import candlecast.serving.deploy", "Stages are layered"),
        ("features/engineering.py", "import candlecast.modeling.training", "Stages are layered"),
        ("config.py", "import candlecast.data.store", "Stages are layered"),
        ("data/store.py", "import airflow", "Only orchestration imports Airflow"),
        ("features/engineering.py", "import torch", "Only the model kinds import PyTorch"),
        ("serving/deploy.py", "import evidently", "Only monitoring imports Evidently"),
        ("cli/app.py", "import candlecast.testing.exchange_server", "never imports the test"),
        # MLflow only through modeling.registry (the kinds' flavours are its listed exceptions)
        ("monitoring/check.py", "import mlflow", "Only the registry imports MLflow"),
        ("modeling/promotion.py", "from mlflow import MlflowClient", "registry imports MLflow"),
        # the service's read path reaching the training side, directly or through a module
        ("serving/forecaster.py", "import candlecast.serving.deploy", "load no training library"),
        ("features/online.py", "import candlecast.features.engineering", "load no training"),
    ],
)
def test_a_planted_violation_breaks_its_contract(copy, module, planted, contract):
    path = copy / "include" / "candlecast" / module
    path.write_text(path.read_text() + f"\n{planted}  # planted\n")
    out = lint(copy)
    assert out.returncode != 0
    assert any(contract in name for name in broken(out.stdout)), out.stdout[-3000:]
