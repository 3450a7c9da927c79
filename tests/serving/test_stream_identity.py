"""One symbol, three streams (two exchanges, two timeframes): each gets its own experiment,
registered model, deployed model and forecast, and the service asks which one is meant.

The pipeline runs through the real CLI (`candlecast run`) on a fresh data directory, so this
is also the first-use path: the run fetches the warm-up and training history by itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from candlecast.cli import embedded
from candlecast.data.importers import read_history
from candlecast.data.resample import resample
from candlecast.settings import Settings
from tests.helpers import REPO
from tests.serving.test_service import free_port

pytestmark = pytest.mark.slow

ETH_5M = REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather"
CANDLECAST = Path(sys.executable).parent / "candlecast"
STREAMS = [("binance", "5m"), ("kraken", "5m"), ("binance", "15m")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A config with ETH/BTC three times, each stream run once from a fresh directory."""
    root = tmp_path_factory.mktemp("identity")
    candles = read_history(ETH_5M)
    resample(candles, "5m", "15m").to_parquet(root / "ETH_BTC-15m.parquet")
    files = {"5m": ETH_5M, "15m": root / "ETH_BTC-15m.parquet"}
    config = root / "pairs.yaml"
    config.write_text(
        # one other target than the main return (identity, not targets, is tested here)
        "defaults: {training: {train_days: 6, targets: [{target: return, horizons: [1]},"
        " {target: volatility, horizons: [1]}]}, data: {max_staleness_candles: 3}}\n"
        "pairs:\n"
        + "".join(
            f"  - {{symbol: ETH/BTC, exchange: {e}, timeframe: {t}, replay_file: {files[t]},"
            " start: 2018-01-25, end: 2018-01-30}\n"
            for e, t in STREAMS
        )
    )
    env = {**os.environ, "CANDLECAST_HOME": str(root / "home"), "CANDLECAST_PAIRS": str(config)}
    outputs = {}
    for exchange, timeframe in STREAMS:
        out = subprocess.run(
            [
                str(CANDLECAST),
                "run",
                "--pair",
                "ETH/BTC",
                "-e",
                exchange,
                "-t",
                timeframe,
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        outputs[(exchange, timeframe)] = out.stdout
    return root, env, outputs


def test_a_fresh_directory_runs_without_a_backfill_first(world):
    _, _, outputs = world
    for stream, text in outputs.items():
        assert '"outcome"' in text and '"bento_model"' in text, stream


def test_each_stream_has_its_own_experiment_and_registered_model(world):
    root, env, _ = world
    script = (
        "import mlflow, json;"
        "from candlecast.modeling import registry; registry.configure();"
        "c = mlflow.MlflowClient();"
        "print(json.dumps({'experiments': sorted(e.name for e in c.search_experiments()),"
        "'models': sorted(m.name for m in c.search_registered_models())}))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    keys = ["binance_eth_btc_5m", "kraken_eth_btc_5m", "binance_eth_btc_15m"]
    assert set(found["experiments"]) >= {f"candlecast-{k}" for k in keys}
    main = [m for m in found["models"] if m.endswith("_forecaster")]
    assert main == sorted(f"{k}_forecaster" for k in keys)
    # every other registered model is one stream's (target, horizon): named after the stream
    targets = set(found["models"]) - set(main)
    assert all(re.fullmatch(rf"({'|'.join(keys)})_(return|volatility)_h\d+", m) for m in targets)
    assert sorted(p.name for p in (root / "home" / "models").iterdir()) == sorted(keys)


def post(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode()}


@pytest.fixture(scope="module")
def service(world):
    root, env, _ = world
    port = free_port()
    settings = Settings(home=root / "home", pairs=Path(env["CANDLECAST_PAIRS"]))
    proc = embedded.start(
        embedded.bentoml_command("127.0.0.1", port),
        root / "bentoml.log",
        embedded.bentoml_env(settings),
    )
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=600, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_service_asks_which_stream_and_serves_each(service):
    status, body = post(service, {"pair": "ETH/BTC"})
    assert status == 400
    for label in ("ETH/BTC on binance at 5m", "ETH/BTC on kraken at 5m", "binance at 15m"):
        assert label in body["error"]
    answers = {}
    for exchange, timeframe in STREAMS:
        status, answer = post(
            service, {"pair": "ETH/BTC", "exchange": exchange, "timeframe": timeframe}
        )
        assert status == 200, answer
        assert (answer["exchange"], answer["timeframe"]) == (exchange, timeframe)
        answers[(exchange, timeframe)] = answer
    assert len({a["model"]["name"] for a in answers.values()}) == 3
    assert len({a["model"]["bento_model"] for a in answers.values()}) == 3
    assert answers[("binance", "15m")]["feature_timestamp"] == "2018-01-30T00:00:00+00:00"
    status, body = post(service, {"pair": "kraken_eth_btc_5m"})  # a stream key is exact
    assert status == 200 and body["exchange"] == "kraken"
