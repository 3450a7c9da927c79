from __future__ import annotations

import pytest

from tests.monitoring import target_world


@pytest.fixture(scope="session")
def trained_targets(tmp_path_factory, btc_candles) -> target_world.TrainedTargets:
    """The target tests' world (:mod:`tests.monitoring.target_world`), built once per worker:
    use a :func:`~tests.monitoring.target_world.copy` of it, never its home."""
    return target_world.build(tmp_path_factory.mktemp("trained_targets"), btc_candles)
