"""Forecast targets as plug-ins: what is forecast, over how many candles, against which
baselines, scored how, and turned into which user-facing numbers.

A :class:`~.base.Target` is declared once here and read by evaluation, training, the gate,
export and serving; nothing downstream assumes "the next candle's return, one number". A
stream's config lists ``(target, horizons)`` pairs (``training.targets``);
:func:`get_target` builds the declared target for one horizon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from candlecast.errors import ConfigError
from candlecast.targets.base import Target
from candlecast.targets.returns import ReturnTarget
from candlecast.targets.volatility import VolatilityTarget

if TYPE_CHECKING:
    from candlecast.config import PairConfig

#: The main champion's target: the next candle's return, trained by the main pipeline.
MAIN = "return_h1"

_TARGETS: dict[str, type[Target]] = {cls.name: cls for cls in (ReturnTarget, VolatilityTarget)}


def target_names() -> list[str]:
    return sorted(_TARGETS)


def get_target(name: str, horizon: int = 1) -> Target:
    """The target ``name`` over ``horizon`` candles.

    Raises:
        ConfigError: an unknown target or a horizon below 1 (the message names both).
    """
    try:
        cls = _TARGETS[name]
    except KeyError:
        raise ConfigError(f"unknown target {name!r} (known: {', '.join(target_names())})") from None
    if horizon < 1:
        raise ConfigError(f"target {name}: horizon must be at least 1 candle, got {horizon}")
    return cls(horizon)


def configured_targets(pair: PairConfig, *, with_main: bool = False) -> list[Target]:
    """The stream's configured targets at each horizon, in config order; without
    ``with_main``, the next candle's return (the main pipeline's) left out."""
    found = [get_target(name, h) for name, h in pair.training.target_horizons()]
    return [t for t in found if with_main or t.key != MAIN]


__all__ = [
    "ReturnTarget",
    "Target",
    "VolatilityTarget",
    "configured_targets",
    "get_target",
    "target_names",
]
