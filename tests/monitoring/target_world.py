"""The world of the target scoring and shadow tests (:mod:`tests.monitoring.test_target_scoring`,
:mod:`tests.monitoring.test_target_shadow`): a stream of its own on the bundled BTC/USD hourly
candles, with the feature rows of the days scored in the offline table (as the candles runs
wrote them). Target training decides each target (:data:`TARGETS`) on the window ending at
:data:`FIRST`, then, as the train DAG's task does (``stages.train_targets``, which scores the
candles already materialized after its window), at :data:`SECOND`; LightGBM is the only learned
kind.

Training is what takes the time, so :func:`build` runs once per test worker (the session
fixture ``trained_targets`` in ``conftest.py``) and each module works on its own
:func:`copy`: what one module's tests add to their home (forecasts, monitor checks) is never
what the other module sees, whichever worker runs it and in which order.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.features.featurestore import write_features
from candlecast.modeling import target_training
from candlecast.modeling.target_export import TargetChampion
from candlecast.serving.forecast_log import PLATFORM, read_forecasts
from candlecast.settings import Settings
from tests.helpers import btc_pair, settings_in

FIRST = datetime(2022, 1, 20, tzinfo=UTC)
SECOND = FIRST + timedelta(days=4)
LAST = SECOND + timedelta(days=6)
HOUR_MS = 3_600_000
TARGETS = [{"target": "return", "horizons": [1, 4]}, {"target": "volatility", "horizons": [24]}]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class TrainedTargets:
    settings: Settings
    pair: PairConfig
    #: Each target's decision at :data:`FIRST`, then at :data:`SECOND`, in the same order.
    first: list[TargetChampion]
    second: list[TargetChampion]
    #: Each target's rows the platform forecast right after the second training.
    logged: dict[str, pd.DataFrame]


def build(home: Path, btc_candles: pd.DataFrame) -> TrainedTargets:
    """The world in ``home``: candles validated up to :data:`LAST`, features from a day
    before :data:`FIRST`, both decisions of each target."""
    from candlecast.orchestration import stages

    settings = settings_in(home)
    pair = btc_pair(train_days=30, targets=TARGETS, kinds=["lightgbm"])
    candles = btc_candles[btc_candles["ts"] < ms(LAST)].tail(3000)
    validated_table(pair.stream, settings).upsert(candles)
    write_features(pair, FIRST - timedelta(days=1), LAST, settings)
    first = target_training.train_targets(pair, FIRST, settings)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CANDLECAST_HOME", str(home))
        env.setenv("CANDLECAST_SERVICE_URL", "http://127.0.0.1:9")  # no service to tell
        second = stages.train_targets(pair, SECOND)
    assert [a.target_key for a in first] == [b.target_key for b in second]
    platform = {}
    for found in first:
        rows = read_forecasts(pair.stream.key, settings=settings, target_key=found.target_key)
        platform[found.target_key] = rows[rows["source"] == PLATFORM].reset_index(drop=True)
    return TrainedTargets(settings, pair, first, second, platform)


def copy(world: TrainedTargets, home: Path) -> TrainedTargets:
    """The world in a copy of its home at ``home`` (MLflow's runs keep their artifacts in the
    original, which no test changes)."""
    shutil.copytree(world.settings.home, home, symlinks=True)
    return replace(world, settings=settings_in(home))
