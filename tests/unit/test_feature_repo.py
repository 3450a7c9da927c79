"""The Feast repo: the CLI's feature_store.yaml matches what candlecast builds, definitions load,
and dvc.yaml parses."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from candlecast.features import featurestore
from tests.helpers import settings_in

REPO = Path(__file__).resolve().parents[2]


def test_feature_store_yaml_matches_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path))
    text = os.path.expandvars((REPO / "feature_repo" / "feature_store.yaml").read_text())
    from_yaml = yaml.safe_load(text)
    built = featurestore.repo_config(settings_in(tmp_path))
    assert from_yaml["project"] == built.project
    assert from_yaml["registry"] == built.registry.path
    assert from_yaml["online_store"] == {"type": "sqlite", "path": built.online_store.path}
    assert from_yaml["offline_store"]["type"] == built.offline_store.type
    assert from_yaml["entity_key_serialization_version"] == built.entity_key_serialization_version


def test_redis_online_store_in_production(tmp_path):
    built = featurestore.repo_config(
        settings_in(tmp_path, online_store="redis", redis_url="r:6379,db=1")
    )
    assert (built.online_store.type, built.online_store.connection_string) == (
        "redis",
        "r:6379,db=1",
    )


def test_definitions_module_exposes_named_objects():
    script = (
        "import runpy; ns = runpy.run_path('feature_repo/definitions.py');"
        "skip = ('configured_timeframes', 'definitions');"
        "print(sorted(k for k in ns if not k.startswith('_') and k not in skip))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    names = out.stdout
    for timeframe in ("1h", "5m"):  # one view and service per configured timeframe
        for name in (f"candle_features_{timeframe}", f"forecast_{timeframe}_v1"):
            assert f"'{name}'" in names
    assert "'market'" in names


def test_dvc_pipeline_has_a_stage_per_pair():
    dvc = Path(sys.executable).parent / "dvc"
    out = subprocess.run([str(dvc), "stage", "list"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    key = "replay_btc_usd_1h"
    assert f"ingest@{key}" in out.stdout and f"pipeline@{key}" in out.stdout
    assert f"models/{key}" in out.stdout
