"""Forecast targets as plug-ins: what is forecast, over how many candles, against which
baselines, scored how, and turned into which user-facing numbers.

A :class:`~.base.Target` is declared once here and read by evaluation, training, the gate,
export and serving; nothing downstream assumes "the next candle's return, one number". A
stream's config lists ``(target, horizons)`` pairs (``training.targets``);
:func:`get_target` builds the declared target for one horizon.

Importing this package is cheap (the DAG factory checks the config against it at parse time):
the target classes, and numpy with them, load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from candlecast.errors import ConfigError

if TYPE_CHECKING:
    from candlecast.config import PairConfig, TrainingSection
    from candlecast.targets.base import Target
    from candlecast.targets.returns import ReturnTarget
    from candlecast.targets.volatility import VolatilityTarget

#: The main champion's target: the next candle's return, trained by the main pipeline.
MAIN = "return_h1"

_TARGETS = {
    "return": ("candlecast.targets.returns", "ReturnTarget"),
    "volatility": ("candlecast.targets.volatility", "VolatilityTarget"),
}


def target_names() -> list[str]:
    return sorted(_TARGETS)


def get_target(name: str, horizon: int = 1) -> Target:
    """The target ``name`` over ``horizon`` candles.

    Raises:
        ConfigError: an unknown target or a horizon below 1 (the message names both).
    """
    check_target(name, horizon)
    module, cls = _TARGETS[name]
    target: Target = getattr(importlib.import_module(module), cls)(horizon)
    return target


def check_target(name: str, horizon: int) -> None:
    """Raises ConfigError for an unknown target or a horizon below 1 (imports nothing)."""
    if name not in _TARGETS:
        raise ConfigError(f"unknown target {name!r} (known: {', '.join(target_names())})")
    if horizon < 1:
        raise ConfigError(f"target {name}: horizon must be at least 1 candle, got {horizon}")


def check_targets(training: TrainingSection) -> None:
    """Every configured (target, horizon) is known (raises ConfigError naming it)."""
    for name, horizon in training.target_horizons():
        check_target(name, horizon)


def configured_targets(pair: PairConfig, *, with_main: bool = False) -> list[Target]:
    """The stream's configured targets at each horizon, in config order; without
    ``with_main``, the next candle's return (the main pipeline's) left out."""
    found = [get_target(name, h) for name, h in pair.training.target_horizons()]
    return [t for t in found if with_main or t.key != MAIN]


def __getattr__(name: str) -> Any:
    classes = {"Target": ("candlecast.targets.base", "Target")} | {
        cls: (module, cls) for module, cls in _TARGETS.values()
    }
    if name in classes:
        module, cls = classes[name]
        return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAIN",
    "ReturnTarget",
    "Target",
    "VolatilityTarget",
    "check_target",
    "check_targets",
    "configured_targets",
    "get_target",
    "target_names",
]
