"""Packaging: `candlecast build-bento` makes a Bento of the service and every stream's
deployed model; the Bento serves forecasts, and its export carries the models (what
`bentoml containerize` copies into the image)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serving import world

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def test_a_built_bento_serves_the_deployed_models(tmp_path):
    env = world.build(tmp_path / "world")
    env.pop("CANDLECAST_API_KEYS", None)
    built = subprocess.run(
        [str(BIN / "candlecast"), "build-bento"], env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    tag = next(w for w in built.stdout.split() if w.startswith("candlecast:"))
    info = subprocess.run(
        [str(BIN / "bentoml"), "get", tag, "-o", "json"], env=env, capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    spec = json.loads(info.stdout)
    deployed = world.run_in(env, "w._deployed_tag('ETH/BTC')")
    assert [m["tag"] for m in spec["models"]] == [deployed]

    exported = tmp_path / "candlecast.bento"
    subprocess.run(
        [str(BIN / "bentoml"), "export", tag, str(exported)],
        env=env,
        check=True,
        capture_output=True,
    )
    with tarfile.open(exported) as archive:
        names = archive.getnames()
    model = deployed.replace(":", "/")
    assert any(name.endswith(f"models/{model}/model.onnx") for name in names), names[:20]

    port = _free_port()
    log = (tmp_path / "bento.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while _get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            assert server.poll() is None, (tmp_path / "bento.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Bento did not become ready"
            time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"pair": "ETH/BTC"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["model"]["version"] == world.run_in(env, "w._deployed_version('ETH/BTC')")
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
