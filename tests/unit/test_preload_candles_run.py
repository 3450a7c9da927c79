"""A candles run in a task forked from the process Airflow forks tasks from (the scheduler,
preloaded by :mod:`candlecast.orchestration.preload`) imports nothing: every module it needs
was inherited. A live 5m stream pays each import on every candle (the scoring modules alone
were a tenth of a run's own work), so a new lazy import in the run's path fails here."""

import json
import subprocess
import sys

from tests.helpers import REPO

SCRIPT = """
import json, os, sys, tempfile
from datetime import timedelta
from pathlib import Path

root = Path(tempfile.mkdtemp(dir=sys.argv[1]))
from candlecast.testing import scaleout

(root / "pairs.yaml").write_text(scaleout.streams_config(1, 4))
os.environ.update(CANDLECAST_HOME=str(root / "home"), CANDLECAST_PAIRS=str(root / "pairs.yaml"))
os.environ["CANDLECAST_SERVICE_URL"] = "http://127.0.0.1:9"  # nothing listens: no announcement

from candlecast.orchestration import preload, stages

assert preload.preload(["airflow", "scheduler"])
from candlecast.config import load_pairs

pair = load_pairs(root / "pairs.yaml").pairs[0]


def in_a_fork(work):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a task: a bare fork of the preloaded process
        os.close(read)
        try:
            os.write(write, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def history():  # what the candles DAG's first run finds: a stream with its history
    stages.backfill(pair, scaleout.END - scaleout.HISTORY, scaleout.END, docs=False)
    stages.materialize(pair, scaleout.END - timedelta(days=1), scaleout.END)
    stages.score(pair, scaleout.END - timedelta(hours=1), scaleout.END)


def candle():
    before = set(sys.modules)
    done = stages.candles_run(pair, scaleout.END, scaleout.END + scaleout.CANDLE)
    new = sorted(set(sys.modules) - before)
    opened = int(scaleout.END.timestamp() * 1000)
    return {"new": new, "online": done.materialize.online_candle_ts, "at": opened}


in_a_fork(history)
print(json.dumps(in_a_fork(candle)))
"""


def test_a_forked_candles_run_imports_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["online"] == found["at"]  # the run did its work: the new candle is online
    assert found["new"] == [], f"imported by every candles task: {found['new']}"
