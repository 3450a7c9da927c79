"""A served world for the service tests and the serving benchmark: real candles (freqtrade's
Binance ETH/BTC 5m), a real pipeline run through the CLI, and helpers that change the stores
the way the pipeline does (newer features materialized, a new model deployed, a new pair).

Each helper runs in its own process with the world's environment (``run_in``), so the test
session's own data directory and BentoML store are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FREQTRADE = REPO / "data" / "bundled" / "freqtrade"
CANDLECAST = Path(sys.executable).parent / "candlecast"
ETH = "{symbol: ETH/BTC, exchange: binance, timeframe: 5m, replay_file: %s, start: 2018-01-25}"
LTC = "{symbol: LTC/BTC, exchange: binance, timeframe: 5m, replay_file: %s, start: 2018-01-25}"
DAY = ["--start", "2018-01-28", "--end", "2018-01-29"]
DEFAULTS = "defaults: {training: {train_days: 6, kinds: [lightgbm]}}\n"


def write_config(path: Path, with_ltc: bool = False, clones: int = 0) -> None:
    """The world's pair config: ETH/BTC (and LTC/BTC), plus ``clones`` copies of ETH/BTC on
    synthetic exchanges (:func:`clone_exchange`), distinct streams of the same candles."""
    lines = [f"  - {ETH % (FREQTRADE / 'ETH_BTC-5m.feather')}\n"]
    if with_ltc:
        lines.append(f"  - {LTC % (FREQTRADE / 'LTC_BTC-5m.feather')}\n")
    eth = ETH % (FREQTRADE / "ETH_BTC-5m.feather")
    lines += [f"  - {eth.replace('binance', clone_exchange(i))}\n" for i in range(clones)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(DEFAULTS + "pairs:\n" + "".join(lines))
    tmp.replace(path)


def clone_exchange(index: int) -> str:
    """The synthetic exchange id of the ``index``-th clone stream (``synth0007``)."""
    return f"synth{index:04d}"


def environment(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    home = root / "home"
    return {
        **os.environ,
        "CANDLECAST_HOME": str(home),
        "CANDLECAST_PAIRS": str(root / "pairs.yaml"),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        **(extra or {}),
    }


def build(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ETH/BTC 5m pipeline run for 2018-01-28 (features online up to 23:55), served by
    whichever kind won the gate; ``extra`` environment variables (another online store) hold
    for the run and the world. Returns the world's environment."""
    root.mkdir(parents=True, exist_ok=True)
    write_config(root / "pairs.yaml")
    env = environment(root, extra)
    out = subprocess.run(
        [str(CANDLECAST), "run", "--pair", "ETH/BTC", *DAY],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return env


def run_in(env: dict[str, str], call: str) -> str:
    """Run ``call`` (Python, using this module as ``w``) in a process with ``env``; returns its
    last stdout line."""
    out = subprocess.run(
        [sys.executable, "-c", f"import tests.serving.world as w; print({call})"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


# -- run inside the world's environment (run_in) ---------------------------------------------


def materialize(symbol: str, start: str, end: str) -> str:
    """Ingest, validate, compute and materialize ``[start, end)``; returns the online row's
    candle (ms)."""
    from candlecast.orchestration import stages

    pair = stages.pair_config(symbol)
    first = datetime.fromisoformat(start).replace(tzinfo=UTC)
    last = datetime.fromisoformat(end).replace(tzinfo=UTC)
    stages.backfill(pair, first, last)
    return str(stages.materialize(pair, first, last).online_candle_ts)


def deploy_lightgbm(
    symbol: str, version: str, n_estimators: int = 50, broken: bool = False, like: str = ""
) -> str:
    """Fit a real LightGBM on the stream's offline features, export it to ONNX and deploy it as
    ``version`` (``broken``: deploy bytes that are no ONNX model), reading the features of the
    model served for ``like`` (default: the stream's own). Returns the BentoML tag."""
    import hashlib

    import numpy as np

    from candlecast.features import featurestore
    from candlecast.modeling.kinds import get_kind
    from candlecast.modeling.kinds.base import model_inputs
    from candlecast.modeling.onnx_export import ExportedModel
    from candlecast.orchestration import stages
    from candlecast.serving import deploy
    from candlecast.settings import get_settings

    pair = stages.pair_config(symbol)
    frame = featurestore.offline_table(pair.stream).read(0, 4_102_444_800_000)  # up to 2100
    kind = get_kind("lightgbm")
    base = _served_card(stages.pair_config(like or symbol))
    features = base.features
    x = model_inputs(frame, features)[:-1]
    close = frame["close"].to_numpy(dtype=np.float64)
    y = np.log(close[1:] / close[:-1])
    params = kind.parse_params({"n_estimators": n_estimators, "learning_rate": 0.05})
    model = kind(features, params)
    model.fit(x, y)
    card = base.model_copy(
        update={
            "stream": pair.key,
            "exchange": pair.exchange,
            "symbol": pair.symbol,
            "timeframe": pair.timeframe,
            "registered_model": pair.stream.registered_model,
            "kind": "lightgbm",
            "kind_params": params.model_dump(mode="json"),
            "version": version,
            "run_id": None,
            "features": list(features),
            "window": 1,
            "note": None,
        }
    )
    graph = card.embed(model.to_onnx())
    payload = b"not an onnx model" if broken else graph.SerializeToString()
    folder = pair.stream.model_dir(get_settings().paths.models, version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(payload)
    exported = ExportedModel(
        card=card,
        parity_max_abs_diff=0.0,
        parity_max_rel_diff=0.0,
        parity_rows=0,
        onnx_sha256=hashlib.sha256(payload).hexdigest(),
        path=str(folder / "model.onnx"),
    )
    exported.write(folder)
    return deploy.deploy(pair, exported)


def serve_clones(count: int, ready: int) -> str:
    """Configure ``count`` clones of ETH/BTC (the world's own streams kept) and make the first
    ``ready`` of them servable the way the pipeline does: ETH/BTC's served model deployed into
    the BentoML store under each clone's name, and ETH/BTC's newest feature row written to the
    online store under each clone's market (Feast's ``write_to_online_store``). Returns the
    number of configured streams."""
    import bentoml

    from candlecast.config import load_pairs
    from candlecast.features import featurestore
    from candlecast.modeling.exported import ExportedModel
    from candlecast.names import view_name
    from candlecast.orchestration import stages
    from candlecast.serving.deploy import bentoml_store
    from candlecast.settings import get_settings
    from tests.helpers import deploy_record

    settings = get_settings()
    eth = stages.pair_config("ETH/BTC", "binance", "5m")
    ltc = any(p.symbol == "LTC/BTC" for p in load_pairs(settings.pairs).pairs)
    write_config(settings.pairs, with_ltc=ltc, clones=count)
    bentoml_store()
    served = bentoml.models.get(f"{eth.stream.bento_model}:latest")
    row = featurestore.offline_table(eth.stream).read(0, 4_102_444_800_000).tail(1)
    store = featurestore.feature_store()
    for index in range(ready):
        clone = stages.pair_config("ETH/BTC", clone_exchange(index), "5m")
        try:
            bentoml.models.get(f"{clone.stream.bento_model}:latest")
            continue  # served by an earlier call
        except bentoml.exceptions.NotFound:
            pass
        exported = ExportedModel.load(Path(served.path_of("")))
        card = exported.card.model_copy(
            update={
                "stream": clone.key,
                "exchange": clone.exchange,
                "registered_model": clone.stream.registered_model,
            }
        )
        labels = {"stream": clone.key, "kind": card.kind, "version": str(card.version)}
        with bentoml.models.create(clone.stream.bento_model, labels=labels) as model:
            payload = Path(served.path_of("model.onnx")).read_bytes()
            deploy_record(Path(model.path_of("")), payload, card)
        store.write_to_online_store(view_name("5m"), row.assign(market=clone.stream.market_key))
    return str(len(load_pairs(settings.pairs).pairs))


def _served_card(pair):  # type: ignore[no-untyped-def]
    import bentoml

    from candlecast.modeling.exported import ExportedModel
    from candlecast.serving.deploy import bentoml_store

    bentoml_store()
    stored = bentoml.models.get(f"{pair.stream.bento_model}:latest")
    return ExportedModel.load(Path(stored.path_of(""))).card


def online_row(symbol: str, features_json: str) -> str:
    """The online values of ``features`` plus close and candle_ts, as JSON."""
    from candlecast.features import featurestore
    from candlecast.orchestration import stages

    pair = stages.pair_config(symbol)
    columns = [*json.loads(features_json), "close", "candle_ts"]
    values = featurestore.online_features(featurestore.feature_store(), pair.stream, columns)
    return json.dumps(values)


def _deployed_tag(symbol: str) -> str:
    from candlecast.orchestration import stages
    from candlecast.serving.deploy import deployed_tag

    return str(deployed_tag(stages.pair_config(symbol)))


def _deployed_version(symbol: str) -> str:
    from candlecast.orchestration import stages

    return str(_served_card(stages.pair_config(symbol)).version)


def target_champions(symbol: str) -> str:
    """JSON: each configured target's MLflow champion version, by target key."""
    from mlflow import MlflowClient

    from candlecast.modeling import registry
    from candlecast.orchestration import stages
    from candlecast.targets import configured_targets

    pair = stages.pair_config(symbol)
    registry.configure()
    client = MlflowClient()
    found = {}
    for target in configured_targets(pair):
        name = pair.stream.target_model(target.key)
        found[target.key] = str(client.get_model_version_by_alias(name, "champion").version)
    return json.dumps(found)
