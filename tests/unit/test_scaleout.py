"""The scale-out measurement's pure parts: the synthetic streams' config and a phase's
figures and verdict (the measurement itself runs in tests/integration/test_celery_stack.py)."""

from __future__ import annotations

import pytest

from candlecast.config import load_pairs
from candlecast.testing import scaleout


def test_synthetic_streams_are_distinct_5m_streams_trained_only_when_asked(tmp_path):
    path = tmp_path / "pairs.yaml"
    path.write_text(scaleout.streams_config(3, candles=12))
    pairs = load_pairs(path).pairs
    assert len({p.stream.candles_dag_id for p in pairs}) == 3
    for pair in pairs:
        assert pair.timeframe == "5m" and pair.candles_schedule == "*/5 * * * *"
        assert pair.end == scaleout.END + scaleout.CANDLE * 12
        assert pair.training.schedule is None and not pair.training.on_new_features


def phase(workers: int, wall: float, durations: list[float], load: float) -> scaleout.Phase:
    names = [f"cc-worker-{1 + i % workers}" for i in range(len(durations))]
    tasks = [{"hostname": n, "duration": d} for n, d in zip(names, durations, strict=True)]
    cpu = dict.fromkeys(scaleout.ROLES, 1.0) | {"workers": 6.0, "scheduler": 2.0}
    return scaleout.Phase(workers, [object()] * len(tasks), tasks, wall, cpu, (load, 0.0, 0.0))  # type: ignore[list-item]


def test_phase_figures():
    found = phase(2, wall=60.0, durations=[30.0] * 4, load=0.5)
    assert found.per_minute == pytest.approx(4.0)
    assert found.cpu_per_run == pytest.approx(12 / 4)
    assert found.slots_busy == pytest.approx(120 / 120)
    assert found.tasks_per_worker == {"cc-worker-1": 2, "cc-worker-2": 2}


@pytest.mark.parametrize(
    ("durations", "load", "verdict"),
    [
        ([30.0] * 4, 0.5, "the workers"),
        ([5.0] * 4, 99.0, "the machine's"),
        ([5.0] * 4, 0.1, "scheduling between tasks"),
    ],
)
def test_bottleneck(durations, load, verdict):
    found = phase(2, wall=60.0, durations=durations, load=load)
    assert found.bottleneck().startswith(verdict)
    assert scaleout.table([found]).count("\n") == 3
