"""Model kinds as plug-ins: a registry of :class:`~.base.ModelKind` subclasses by name.

A kind registers itself with :func:`register`; everything else asks :func:`get_kind` by the
name the config or a registered model version carries. Kind modules import their heavy
libraries (LightGBM, MLflow, PyTorch) inside methods, so the registry is cheap to import
(the DAG factory checks the config against it at parse time). PyTorch may be imported only
by kind modules (an import-linter contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from candlecast.errors import ConfigError, UnknownModelKindError

if TYPE_CHECKING:
    from candlecast.config import TrainingSection
    from candlecast.modeling.kinds.base import KindParams, ModelKind

K = TypeVar("K", bound="type[ModelKind]")

#: Kinds by (target, name): a name means one kind per target (``persistence`` forecasts a
#: return of 0 for returns and the last realized variance for volatility).
_KINDS: dict[tuple[str, str], type[ModelKind]] = {}
#: The baseline every challenger must beat, and the champion when none does.
BASELINE = "persistence"


def register(cls: K) -> K:
    """Class decorator: make a kind available by its ``name`` for each of its ``targets``."""
    for target in cls.targets:
        if _KINDS.get((target, cls.name), cls) is not cls:
            raise ValueError(f"model kind {cls.name!r} is registered twice for {target!r}")
        _KINDS[(target, cls.name)] = cls
    return cls


def get_kind(name: str, target: str = "return") -> type[ModelKind]:
    """The kind registered as ``name`` for ``target``.

    Raises:
        UnknownModelKindError: no such kind (the message lists the target's known ones).
    """
    _load_builtin()
    try:
        return _KINDS[(target, name)]
    except KeyError:
        known = ", ".join(kind_names(target))
        where = "" if target == "return" else f" for target {target!r}"
        raise UnknownModelKindError(
            f"unknown model kind {name!r}{where} (known: {known})"
        ) from None


def kind_names(target: str = "return") -> list[str]:
    """Names of the kinds that can forecast ``target``."""
    _load_builtin()
    return sorted(name for kind_target, name in _KINDS if kind_target == target)


def kind_params(training: TrainingSection, name: str) -> KindParams:
    """A kind's parameters from a training config section, validated by the kind."""
    kind = get_kind(name)
    try:
        return kind.parse_params(training.params.get(name))
    except ValidationError as exc:
        raise ConfigError(f"training.params.{name}: {exc}") from exc


def check_training(training: TrainingSection, where: str = "") -> None:
    """Fail loudly on unknown kinds or bad parameters in a training section, and on targets
    nothing can forecast.

    Raises:
        ConfigError: naming the kind, the parameter key or the target (and ``where``).
    """
    from candlecast.targets import check_targets

    prefix = f"{where}: " if where else ""
    for name in [*training.kinds, *training.params]:
        try:
            kind_params(training, name)
        except (UnknownModelKindError, ConfigError) as exc:
            raise ConfigError(f"{prefix}{exc}") from exc
    try:
        check_targets(training)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}training.targets: {exc}") from exc


def _load_builtin() -> None:
    """Import the bundled kinds (each registers itself)."""
    from candlecast.modeling.kinds import (  # noqa: F401
        baselines,
        cnn_transformer,
        lightgbm_direction,
        lightgbm_kind,
        lstm,
        volatility_baselines,
    )
