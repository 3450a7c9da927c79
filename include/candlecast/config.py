"""The pair config: which trading pairs to forecast, from where, how often.

A YAML file validated by frozen pydantic models with ``extra="forbid"``, so a typo fails
at parse time with the offending key named.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from candlecast.settings import get_settings
from candlecast.timeframes import timeframe_ms

_SYMBOL = re.compile(r"^[A-Z0-9]{2,15}/[A-Z0-9]{2,15}$")


class ConfigError(ValueError):
    """The pair config file is missing or invalid."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LightGBMParams(_Frozen):
    """Defaults are deliberately conservative: hourly returns are mostly noise, and a model
    that shrinks towards "no change" is the only kind with a chance to beat persistence."""

    n_estimators: int = Field(default=200, gt=0)
    learning_rate: float = Field(default=0.005, gt=0)
    num_leaves: int = Field(default=4, gt=1)
    min_child_samples: int = Field(default=300, gt=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=50.0, ge=0)


class PairConfig(_Frozen):
    """One trading pair on one exchange at one timeframe."""

    symbol: str = Field(description="Unified ccxt symbol, BASE/QUOTE.")
    exchange: str = Field(default="replay", description="ccxt exchange id, or 'replay'.")
    timeframe: str = "1h"
    replay_file: Path | None = Field(
        default=None, description="Candle file the replay exchange serves (exchange: replay)."
    )
    start: datetime = Field(description="Start of the first data interval the DAG runs.")
    end: datetime | None = Field(default=None, description="End of the last data interval.")
    schedule: str = "@daily"
    train_days: int = Field(default=120, gt=0, description="Training window, days of history.")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    min_train_rows: int = Field(default=500, gt=0)
    derived_timeframes: list[str] = Field(
        default_factory=list,
        description="Higher timeframes resampled from the native candles (e.g. [4h, 1d]).",
    )
    max_close_step: float = Field(
        default=0.5, gt=0, description="Largest |close/previous close - 1| that is not an error."
    )
    max_volume_spike: float = Field(
        default=1000.0, gt=1, description="Largest volume / median of the previous 48 candles."
    )
    max_staleness_candles: int | None = Field(
        default=3, ge=1, description="Newest candle at most this many candles before run end."
    )
    lightgbm: LightGBMParams = LightGBMParams()

    @field_validator("symbol")
    @classmethod
    def _symbol_format(cls, value: str) -> str:
        if not _SYMBOL.match(value):
            raise ValueError(f"symbol {value!r} is not BASE/QUOTE in capitals, e.g. BTC/USDT")
        return value

    @field_validator("timeframe")
    @classmethod
    def _timeframe_known(cls, value: str) -> str:
        timeframe_ms(value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _source_complete(self) -> PairConfig:
        if self.exchange == "replay" and self.replay_file is None:
            raise ValueError(f"pair {self.symbol}: exchange 'replay' needs replay_file")
        native = timeframe_ms(self.timeframe)
        for derived in self.derived_timeframes:
            if timeframe_ms(derived) <= native or timeframe_ms(derived) % native:
                raise ValueError(
                    f"pair {self.symbol}: derived timeframe {derived} is not a multiple of "
                    f"{self.timeframe}"
                )
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"pair {self.symbol}: end must be after start")
        return self

    @property
    def slug(self) -> str:
        """File- and id-safe name: ``BTC/USDT`` -> ``BTC_USDT``."""
        return self.symbol.replace("/", "_")

    @property
    def key(self) -> str:
        """Lower-case identifier for DAG ids and model names: ``btc_usdt``."""
        return self.slug.lower()


class PairsConfig(_Frozen):
    pairs: list[PairConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PairsConfig:
        keys = [p.key for p in self.pairs]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"pairs listed twice: {', '.join(duplicates)}")
        return self

    def get(self, symbol: str) -> PairConfig:
        """The pair with this symbol (``BTC/USD``) or key (``btc_usd``).

        Raises:
            KeyError: no such pair is configured.
        """
        for pair in self.pairs:
            if symbol in (pair.symbol, pair.key, pair.slug):
                return pair
        known = ", ".join(p.symbol for p in self.pairs)
        raise KeyError(f"pair {symbol!r} is not configured (configured: {known})")


def load_pairs(path: Path | None = None) -> PairsConfig:
    """Read and validate the pair config (default: ``CANDLECAST_PAIRS``).

    Relative ``replay_file`` paths are taken relative to the config file.
    """
    path = (path or get_settings().pairs).expanduser().resolve()
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"pair config not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"pair config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"pair config {path} must be a mapping with a 'pairs' list")
    for entry in raw.get("pairs") or []:
        if isinstance(entry, dict) and entry.get("replay_file"):
            entry["replay_file"] = str((path.parent / entry["replay_file"]).resolve())
    try:
        return PairsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"pair config {path} is invalid:\n{exc}") from exc
