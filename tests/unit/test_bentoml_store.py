"""One process that deploys for two data directories (a test session, a worker deploying for
several homes) writes each model into its own directory's BentoML store: BentoML resolves its
home once per process, so pointing ``BENTOML_HOME`` after its first use is not enough."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

SCRIPT = """
import sys
from pathlib import Path
from candlecast.serving.modelstore import bentoml_store
from candlecast.settings import Settings

first, second = Path(sys.argv[1]), Path(sys.argv[2])
bentoml_store(Settings(home=first))
import bentoml

for home, name in ((first, "first_model"), (second, "second_model"), (first, "third_model")):
    bentoml_store(Settings(home=home))
    with bentoml.models.create(name) as model:
        Path(model.path_of("weights")).write_text(name)
    print(name, Path(bentoml.models.get(name).path).is_relative_to(home))
"""


def test_each_data_directory_gets_its_own_models_in_one_process(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(first), str(second)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [
        "first_model",
        "True",
        "second_model",
        "True",
        "third_model",
        "True",
    ]
    assert sorted(p.name for p in (first / "bentoml" / "models").iterdir()) == [
        "first_model",
        "third_model",
    ]
    assert [p.name for p in (second / "bentoml" / "models").iterdir()] == ["second_model"]
