"""dvc.yaml: one stage set per stream of the pair config, read by DVC's own loader, runnable
without an activated virtual environment; published models carry no absolute path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from candlecast.config import load_pairs

REPO = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).parent / "dvc"
#: What a shell without the virtual environment activated has on its PATH.
BARE_PATH = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])


def bare_env(**extra: str) -> dict[str, str]:
    """The environment of a shell where the virtual environment is not activated."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "CANDLECAST_HOME", "CANDLECAST_PAIRS"}
    base = {k: v for k, v in os.environ.items() if k not in drop}
    return base | {"PATH": BARE_PATH} | extra


def run(
    args: list[str | Path], cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=bare_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stage_outs(repo: Path) -> dict[str, list[str]]:
    """Stage name -> outputs, as DVC's own loader resolves dvc.yaml (``dvc stage list``)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        return {stage.name: [o.def_path for o in stage.outs] for stage in dvc_repo.index.stages}


def dvc_workspace(folder: Path, pairs: dict[str, Any]) -> Path:
    """A DVC project (no git) with this repository's dvc.yaml, CLI wrapper and virtual
    environment, and the given pair config."""
    folder.mkdir()
    for name in ("dvc.yaml", "scripts/candlecast"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, folder / name)
    (folder / ".venv").symlink_to(REPO / ".venv")
    (folder / "config").mkdir()
    (folder / "config" / "pairs.yaml").write_text(yaml.safe_dump(pairs))
    done = run([DVC, "init", "--no-scm", "-q"], folder)
    assert done.returncode == 0, done.stderr
    return folder


def test_dvc_stages_are_the_configured_streams():
    keys = {pair.key for pair in load_pairs(REPO / "config" / "pairs.yaml").pairs}
    outs = stage_outs(REPO)
    assert set(outs) == {f"{stage}@{key}" for key in keys for stage in ("ingest", "pipeline")}
    for key in keys:
        assert any(out.endswith(f"models/{key}") for out in outs[f"pipeline@{key}"]), outs


def test_streams_file_matches_the_config_without_an_activated_venv():
    """The committed dvc.streams.yaml is what the config gives today, checked the way every
    stage checks it: through scripts/candlecast, from a shell without the venv."""
    done = run(
        ["scripts/candlecast", "dvc-streams", "--check"],
        REPO,
        env={"CANDLECAST_PAIRS": "config/pairs.yaml"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_streams_of_one_symbol_get_distinct_stages_and_outputs(tmp_path):
    """One symbol on two exchanges and two timeframes (live streams, no replay file): six
    stages, no output shared, and a config change the file does not reflect fails the check."""
    streams = [
        {"symbol": "BTC/USDT", "exchange": "binance", "timeframe": "1h", "start": "2024-01-01"},
        {"symbol": "BTC/USDT", "exchange": "binance", "timeframe": "4h", "start": "2024-01-01"},
        {"symbol": "BTC/USDT", "exchange": "kraken", "timeframe": "1h", "end": "2024-06-01"},
    ]
    folder = dvc_workspace(tmp_path / "w", {"pairs": streams})
    env = {"CANDLECAST_PAIRS": "config/pairs.yaml"}
    done = run(["scripts/candlecast", "dvc-streams"], folder, env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    outs = stage_outs(folder)
    keys = ["binance_btc_usdt_1h", "binance_btc_usdt_4h", "kraken_btc_usdt_1h"]
    assert set(outs) == {f"{stage}@{key}" for key in keys for stage in ("ingest", "pipeline")}
    every = [out for stage_outputs in outs.values() for out in stage_outputs]
    assert len(every) == len(set(every)) == 9, outs
    assert ".candlecast/raw/kraken/BTC_USDT/1h" in outs["ingest@kraken_btc_usdt_1h"]
    ranges = yaml.safe_load((folder / "dvc.streams.yaml").read_text())["streams"]
    assert ranges["binance_btc_usdt_1h"]["start"] == "2024-01-01T00:00:00"
    # An open start: the history training needs before the end: 120 days, and the volatility
    # features' warm-up (twice the 720-hour month window and a day: 1,464 hours).
    assert ranges["kraken_btc_usdt_1h"]["start"] == "2023-12-03T00:00:00"

    assert run(["scripts/candlecast", "dvc-streams", "--check"], folder, env=env).returncode == 0
    # An open end stays pinned where the file was written (a check on a later day passes).
    written = (folder / "dvc.streams.yaml").read_text()
    pinned = ranges["binance_btc_usdt_4h"]["end"]
    (folder / "dvc.streams.yaml").write_text(written.replace(pinned, "2024-03-01T00:00:00"))
    assert run(["scripts/candlecast", "dvc-streams", "--check"], folder, env=env).returncode == 0
    (folder / "config" / "pairs.yaml").write_text(yaml.safe_dump({"pairs": streams[:2]}))
    stale = run(["scripts/candlecast", "dvc-streams", "--check"], folder, env=env)
    assert stale.returncode == 1 and "dvc-streams" in stale.stdout, stale.stdout


def stale_lock_entries(repo: Path) -> list[str]:
    """Where dvc.lock does not match the project, as DVC's own status sees it: a stage not in
    the lock, a changed command, a changed dependency that git tracks (the config, a source
    file, the package). Stage outputs (``.candlecast/``, ``models/``) are not in a clone, so
    their absence is no staleness; a fresh clone's ``dvc repro`` would rewrite the lock for
    any entry listed."""
    from dvc.repo import Repo

    locked = set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])
    with Repo(str(repo)) as dvc_repo:
        stages = list(dvc_repo.index.stages)
        produced = {out.def_path for stage in stages for out in stage.outs}
        status = dvc_repo.status()
    found = [f"{s.name}: not in dvc.lock" for s in stages if s.name not in locked]
    for where, entries in sorted(status.items()):
        name = where.rsplit(":", 1)[-1]  # "<path of dvc.yaml>:<stage>" outside the project
        for entry in entries:
            if isinstance(entry, str):
                found.append(f"{name}: {entry}")
                continue
            for path, state in entry.get("changed deps", {}).items():
                if path not in produced:
                    found.append(f"{name}: {path} {state}")
    return found


def project_copy(folder: Path) -> Path:
    """What a fresh clone has of the stages' inputs (the working tree's dvc files, config,
    bundled data and package), as a DVC project of its own: no stage output, no DVC lock
    held by a `dvc repro` running in the checkout."""
    for name in ("dvc.yaml", "dvc.lock", "dvc.streams.yaml", ".dvcignore", "config/pairs.yaml"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, folder / name)
    shutil.copytree(REPO / "data" / "bundled", folder / "data" / "bundled")
    shutil.copytree(
        REPO / "include" / "candlecast",
        folder / "include" / "candlecast",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    assert run([DVC, "init", "--no-scm", "-q"], folder).returncode == 0
    return folder


def test_the_committed_dvc_lock_is_current(tmp_path):
    """A fresh clone's `dvc repro` leaves dvc.lock as committed: every stage's command and
    git-tracked dependencies hash as locked. After changing the config, the bundled data or
    the package: `dvc repro` (see README), then commit dvc.lock."""
    stale = stale_lock_entries(project_copy(tmp_path / "project"))
    assert stale == [], "dvc.lock is stale; run `dvc repro` and commit it:\n" + "\n".join(stale)


def test_a_stale_lock_is_found(tmp_path):
    """The check itself: a changed package file and a changed stage command are each found."""
    folder = project_copy(tmp_path / "project")
    with (folder / "include" / "candlecast" / "names.py").open("a") as changed:
        changed.write("# changed\n")
    lock = (folder / "dvc.lock").read_text()
    (folder / "dvc.lock").write_text(lock.replace("dvc-streams --check", "dvc-streams  --check", 1))
    stale = set(stale_lock_entries(folder))
    keys = yaml.safe_load((REPO / "dvc.streams.yaml").read_text())["streams"]
    assert {f"pipeline@{key}: include/candlecast modified" for key in keys} <= stale, stale
    assert "ingest@binance_eth_btc_5m: changed command" in stale, stale


def absolute_paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [p for value in node.values() for p in absolute_paths(value)]
    if isinstance(node, list):
        return [p for item in node for p in absolute_paths(item)]
    return [node] if isinstance(node, str) and (node.startswith("/") or ":\\" in node) else []


def test_absolute_paths_finds_them():
    assert absolute_paths({"a": ["x", {"b": "/tmp/m.onnx"}], "c": "C:\\m"}) == [
        "/tmp/m.onnx",
        "C:\\m",
    ]


@pytest.mark.slow
def test_dvc_repro_publishes_a_path_free_model_and_leaves_status_clean(tmp_path):
    """`dvc repro` for real, from a shell without the virtual environment, on a project with
    one replayed stream: the champion is published, its metadata names no absolute path (nor
    the directory it was made in), and `dvc status` is clean afterwards."""
    data = tmp_path / "w" / "data" / "bundled" / "freqtrade"
    pairs = {
        "defaults": {"training": {"kinds": ["lightgbm"], "min_train_rows": 500}},
        "pairs": [
            {
                "symbol": "ETH/BTC",
                "exchange": "binance",
                "replay_file": "../data/bundled/freqtrade/ETH_BTC-5m.feather",
                "timeframe": "5m",
                "start": "2018-01-20T00:00:00Z",
                "end": "2018-01-30T00:00:00Z",
                "training": {"train_days": 7},
            }
        ],
    }
    folder = dvc_workspace(tmp_path / "w", pairs)
    data.mkdir(parents=True)
    shutil.copy2(REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather", data)
    shutil.copytree(REPO / "include" / "candlecast", folder / "include" / "candlecast")
    env = {"CANDLECAST_PAIRS": "config/pairs.yaml"}
    assert run(["scripts/candlecast", "dvc-streams"], folder, env=env).returncode == 0

    done = run([DVC, "repro"], folder, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # a short account: each stage's summary lines, no progress bar, JSON or warning
    printed = (done.stdout + done.stderr).splitlines()
    assert len(printed) < 60, "\n".join(printed)
    assert not [line for line in printed if "━" in line or line.startswith("{")], printed
    assert not [line for line in printed if "warning" in line.lower()], printed

    published = folder / "models" / "binance_eth_btc_5m"
    metadata = json.loads((published / "export.json").read_text())
    assert metadata["path"] == "model.onnx" and (published / metadata["path"]).is_file()
    assert metadata["card"]["stream"] == "binance_eth_btc_5m"
    # a random id or a clock would change the lock at every repro, in the record or the ONNX
    assert metadata["card"]["run_id"] is None and metadata["card"]["trained_at"] is None
    import onnx

    from candlecast.modeling.card import ModelCard

    embedded = ModelCard.from_onnx(onnx.load(published / "model.onnx"))
    assert embedded == ModelCard.model_validate(metadata["card"])
    assert absolute_paths(metadata) == []
    assert str(tmp_path) not in (published / "export.json").read_text()

    status = run([DVC, "status"], folder)
    assert status.returncode == 0, status.stderr
    assert "up to date" in status.stdout, status.stdout
