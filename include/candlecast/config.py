"""The pair config: which forecast streams to run, from where, how often, with what settings.

A YAML file validated by frozen pydantic models with ``extra="forbid"``, so a typo fails at
parse time with the offending key named::

    defaults:                       # every pair inherits these (section by section)
      training: {train_days: 60, kinds: [lightgbm]}
    pairs:
      - {symbol: ETH/BTC, exchange: binance, timeframe: 5m}
      - symbol: BTC/USD
        exchange: replay
        replay_file: ../data/bundled/BTC_USD-Hourly.csv
        training: {train_days: 120}

A pair's settings are the defaults with the pair's own values laid over them key by key
(sections merge; lists and scalars replace). Each pair is one forecast stream
(:class:`~candlecast.names.Stream`): exchange, symbol and timeframe together must be unique.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from candlecast.config_errors import describe
from candlecast.errors import AmbiguousStreamError, ConfigError, UnknownStreamError
from candlecast.names import Stream
from candlecast.settings import get_settings
from candlecast.timeframes import timeframe_cron, timeframe_ms

#: Pair keys that are the stream's identity or source rather than inherited settings.
IDENTITY_KEYS = ("symbol", "exchange", "timeframe")


class _Frozen(BaseModel):
    # no infinite or NaN setting: `train_days: .inf` would pass ``gt=0`` and overflow later
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DataSection(_Frozen):
    """Validation bounds and derived timeframes of the candle data."""

    max_close_step: float = Field(
        default=0.5, gt=0, description="Largest |close/previous close - 1| that is not an error."
    )
    max_volume_spike: float = Field(
        default=1000.0,
        gt=1,
        description="Largest volume / upper quartile of the last 48 traded candles' volumes "
        "before a candle is flagged as a spike.",
    )
    max_zero_run_hours: float = Field(
        default=24.0, gt=0, description="Longest zero-volume run (hours) that is not flagged."
    )
    max_refused_share: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="Largest share of a batch one rule may refuse (impossible rows) before "
        "the whole batch is refused (Great Expectations' mostly = 1 - share).",
    )
    max_flagged_share: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Largest share of a batch one oddity rule may flag before the whole "
        "batch is refused.",
    )
    exclude_flagged: bool = Field(
        default=False,
        description="Leave candles flagged as odd (close step, volume spike, long zero-volume "
        "run, VWAP excess) out of features, training and evaluation.",
    )
    max_staleness_candles: int | None = Field(
        default=3, ge=1, description="Newest candle at most this many candles before run end."
    )
    max_missing_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Largest share of missing candles in a training window before training "
        "refuses it (validation reports the share of every batch).",
    )
    derived_timeframes: list[str] = Field(
        default_factory=list,
        description="Higher timeframes resampled from the native candles (e.g. [4h, 1d]).",
    )

    @field_validator("derived_timeframes")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        for value in values:
            timeframe_ms(value)
        return values


class FeaturesSection(_Frozen):
    """How feature rows are made and kept."""

    warmup_candles: int = Field(
        default=500,
        ge=50,
        description="Candles read before an interval to warm indicators up (the 12x higher "
        "timeframe's indicators need about 35 of its candles).",
    )


class GateSection(_Frozen):
    """Evidence a challenger needs to become champion (there is no switch to turn it off)."""

    alpha: float = Field(
        default=0.05, gt=0, le=0.2, description="Significance level of the one-sided tests."
    )
    min_margin: float = Field(
        default=0.001, ge=0, lt=0.5, description="Least relative improvement (0.001 = 0.1%)."
    )
    metrics: list[Literal["rmse", "mae"]] = Field(
        default=["rmse", "mae"],
        min_length=1,
        description="Metrics the challenger must win on, every one.",
    )
    windows: int = Field(
        default=8, ge=3, le=100, description="Rolling holdout windows the tests are run over."
    )


class TargetSpec(_Frozen):
    """One forecast target of a stream and the horizons (in candles) it is forecast at."""

    target: str = Field(description="A target of candlecast.targets: return or volatility.")
    horizons: list[int] = Field(
        min_length=1, description="Horizons in candles of the stream's timeframe."
    )

    @field_validator("horizons")
    @classmethod
    def _positive_unique(cls, values: list[int]) -> list[int]:
        if any(h < 1 for h in values):
            raise ValueError(f"horizons must be at least 1 candle: {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"horizons listed twice: {values}")
        return values


def _default_targets() -> list[TargetSpec]:
    return [
        TargetSpec(target="return", horizons=[1, 4, 24]),
        TargetSpec(target="volatility", horizons=[1, 24]),
    ]


class TrainingSection(_Frozen):
    """The training window, the holdout and the model kinds that compete."""

    train_days: float = Field(default=120, gt=0, description="Training window, days of history.")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    min_train_rows: int = Field(default=500, gt=0)
    kinds: list[str] = Field(
        default_factory=lambda: ["lightgbm"],
        min_length=1,
        description="Model kinds trained as challengers (names of model-kind plug-ins).",
    )
    targets: list[TargetSpec] = Field(
        default_factory=_default_targets,
        min_length=1,
        description="What the stream forecasts: targets and their horizons. The next candle's "
        "return (return, horizon 1) is the main champion's; every other (target, horizon) gets "
        "its own gate and champion among the target's baselines and the kinds that can fit it.",
    )
    gate: GateSection = GateSection()
    schedule: str | None = Field(
        default="@daily",
        description="Cadence of the train DAG (cron or preset); null: only on asset events "
        "and manual triggers.",
    )
    on_new_features: bool = Field(
        default=True,
        description="Also train when the candles DAG materializes new features (set false "
        "for streams whose candles DAG runs often, to train by the cadence only).",
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per kind, parameters overriding the kind's defaults "
        "(checked against the kind's own schema when the pipeline is built).",
    )

    @field_validator("kinds")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError(f"model kinds listed twice: {values}")
        return values

    @field_validator("targets")
    @classmethod
    def _targets_once(cls, values: list[TargetSpec]) -> list[TargetSpec]:
        names = [spec.target for spec in values]
        if len(set(names)) != len(names):
            raise ValueError(f"targets listed twice: {names}")
        return values

    def target_horizons(self) -> list[tuple[str, int]]:
        """Every configured (target, horizon), in config order."""
        return [(spec.target, h) for spec in self.targets for h in spec.horizons]


class MonitoringSection(_Frozen):
    """Thresholds of the drift and realized-skill checks."""

    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that requests a retrain."
    )
    window_candles: int = Field(default=500, ge=50, description="Recent window the checks use.")
    retrain_cooldown_hours: float = Field(
        default=24,
        ge=0,
        description="At most one drift-triggered retrain per this period of data time (hours "
        "of candles between the checks' as_of, so a backfill is rate limited like live time).",
    )
    feature_threshold: float = Field(
        default=0.5,
        gt=0,
        description="Normed Wasserstein distance from which a continuous feature has drifted "
        "(see candlecast.monitoring.drift for the tests and why).",
    )
    max_rmse_ratio: float = Field(
        default=1.05,
        gt=0,
        description="Realized RMSE / persistence's above which the champion has decayed.",
    )
    min_forecasts: int = Field(
        default=100, ge=10, description="Realized forecasts needed before skill is judged."
    )
    min_coverage: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="Realized coverage of a target's 90% intervals below which it asks for a "
        "retrain (judged over at least min_forecasts forecasts).",
    )
    schedule: str = Field(default="@daily", description="Cadence of the monitor DAG.")
    reports_kept: int = Field(
        default=30,
        ge=1,
        description="Evidently reports kept per stream (a few MB each); older ones are deleted.",
    )


class ServingSection(_Frozen):
    """How the prediction service answers for the stream."""

    max_feature_age_candles: int = Field(
        default=2,
        ge=1,
        description="A forecast whose features are older than this many candles past their "
        "close is marked stale.",
    )


class PairConfig(_Frozen):
    """One forecast stream: a symbol on an exchange at a timeframe, and its settings."""

    symbol: str = Field(description="Unified ccxt symbol, BASE/QUOTE.")
    exchange: str = Field(description="ccxt exchange id (binance, kraken, ...), or 'replay'.")
    timeframe: str = "1h"
    replay_file: Path | None = Field(
        default=None,
        description="Serve candles from this history file (any format the importer reads) "
        "through the exchange interface instead of calling the exchange.",
    )
    start: datetime | None = Field(
        default=None, description="Start of the first data interval (none: from now on)."
    )
    end: datetime | None = Field(default=None, description="End of the last data interval.")
    schedule: str | None = Field(
        default=None,
        description="Cron or preset of the candles DAG; each run owns [start, end) of its "
        "interval. Default: one run per candle of the timeframe.",
    )
    data: DataSection = DataSection()
    features: FeaturesSection = FeaturesSection()
    training: TrainingSection = TrainingSection()
    monitoring: MonitoringSection = MonitoringSection()
    serving: ServingSection = ServingSection()

    @model_validator(mode="before")
    @classmethod
    def _replay_exchange(cls, data: Any) -> Any:
        """A pair that replays a file and names no exchange is on the ``replay`` exchange."""
        if isinstance(data, dict) and data.get("replay_file") and not data.get("exchange"):
            return {**data, "exchange": "replay"}
        return data

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PairConfig:
        stream = Stream(self.exchange, self.symbol, self.timeframe)  # checks each part
        if self.exchange == "replay" and self.replay_file is None:
            raise ValueError(f"{stream.label}: exchange 'replay' needs replay_file")
        native = timeframe_ms(self.timeframe)
        for derived in self.data.derived_timeframes:
            if timeframe_ms(derived) <= native or timeframe_ms(derived) % native:
                raise ValueError(
                    f"{stream.label}: derived timeframe {derived} is not a multiple of "
                    f"{self.timeframe}"
                )
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"{stream.label}: end must be after start")
        if self.schedule is None and timeframe_cron(self.timeframe) is None:
            raise ValueError(
                f"{stream.label}: no cron fires at every {self.timeframe} candle; set schedule"
            )
        return self

    @property
    def stream(self) -> Stream:
        return Stream(self.exchange, self.symbol, self.timeframe)

    @property
    def key(self) -> str:
        return self.stream.key

    @property
    def candles_schedule(self) -> str:
        """The candles DAG's cron: ``schedule``, or one run per candle of the timeframe."""
        if self.schedule:
            return self.schedule
        return timeframe_cron(self.timeframe) or "@daily"  # None is refused by validation

    @property
    def slug(self) -> str:
        return self.stream.slug

    def config_line(self) -> str:
        """The one line that configures this stream in ``pairs:``."""
        return (
            f"- {{symbol: {self.symbol}, exchange: {self.exchange}, timeframe: {self.timeframe}}}"
        )


class PairsConfig(_Frozen):
    defaults: dict[str, Any] = Field(default_factory=dict, description="Inherited by every pair.")
    pairs: list[PairConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PairsConfig:
        keys = [p.key for p in self.pairs]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"streams listed twice: {', '.join(duplicates)}")
        return self

    @property
    def streams(self) -> list[Stream]:
        return [p.stream for p in self.pairs]

    def resolve(
        self, symbol: str, exchange: str | None = None, timeframe: str | None = None
    ) -> PairConfig:
        """The one configured stream matching a symbol (``BTC/USDT``, ``btc_usdt``), or a
        stream key (``binance_btc_usdt_1h``), narrowed by exchange and timeframe.

        Raises:
            UnknownStreamError: nothing matches (the message lists what is configured).
            AmbiguousStreamError: several match (the message lists them).
        """
        found = [p for p in self.pairs if _matches(p, symbol, exchange, timeframe)]
        if len(found) == 1:
            return found[0]
        wanted = " ".join(x for x in (symbol, exchange, timeframe) if x)
        if not found:
            known = ", ".join(p.stream.label for p in self.pairs)
            raise UnknownStreamError(
                f"no configured stream matches {wanted!r} (configured: {known})"
            )
        labels = [p.stream.label for p in found]
        raise AmbiguousStreamError(
            f"{wanted!r} matches {len(found)} streams: {', '.join(labels)}; "
            "name the exchange and timeframe",
            [p.key for p in found],
        )

    def get(self, symbol: str) -> PairConfig:
        """:meth:`resolve` by symbol or key alone."""
        return self.resolve(symbol)

    def adhoc(self, symbol: str, exchange: str, timeframe: str) -> PairConfig:
        """A stream that is not configured, with the defaults applied (for imports and reports
        on history that nobody forecasts yet). A configured stream is returned as configured."""
        for pair in self.pairs:
            if pair.stream == Stream(exchange, symbol, timeframe):
                return pair
        entry = _merge(
            self.defaults, {"symbol": symbol, "exchange": exchange, "timeframe": timeframe}
        )
        if exchange != "replay":
            entry.pop("replay_file", None)
        try:
            return PairConfig.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"{symbol} {exchange} {timeframe}: {_errors(exc)}") from exc


def _matches(pair: PairConfig, symbol: str, exchange: str | None, timeframe: str | None) -> bool:
    stream = pair.stream
    if symbol.lower() == stream.key:
        return True
    by_symbol = symbol.upper().replace("_", "/").replace("-", "/") == stream.symbol
    return (
        by_symbol
        and (exchange is None or exchange == stream.exchange)
        and (timeframe is None or timeframe == stream.timeframe)
    )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'pair'}: {err['msg']}" for err in exc.errors()
    )


def _entries(raw: dict[str, Any], folder: Path) -> list[Any]:
    """The pair entries with defaults applied and replay files resolved against ``folder``."""
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError("'defaults' must be a mapping of settings every pair inherits")
    bad = [k for k in IDENTITY_KEYS[:1] if k in defaults]
    if bad:
        raise ConfigError(f"'defaults' cannot set {bad}: each pair names its own symbol")
    entries = []
    for entry in raw.get("pairs") or []:
        if isinstance(entry, dict):
            entry = _merge(defaults, entry)
            if entry.get("replay_file"):
                entry["replay_file"] = str((folder / str(entry["replay_file"])).resolve())
        entries.append(entry)
    return entries


def load_pairs(path: Path | None = None) -> PairsConfig:
    """Read and validate the pair config (default: ``CANDLECAST_PAIRS``).

    Relative ``replay_file`` paths are taken relative to the config file.

    Raises:
        ConfigError: missing file, bad YAML, or invalid content (the key is named).
    """
    path = (path or get_settings().pairs).expanduser().resolve()
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"pair config not found: {path}") from exc
    # A task parses the DAG file, and its stages read the config again: with hundreds of
    # streams each validation costs a tenth of a second. The config is frozen, so one
    # validation per content of the file is shared (the preloading scheduler's is inherited by
    # the tasks it forks).
    cached = _LOADED.get((path, text))
    if cached is None:
        cached = _validate(path, text)
        _LOADED.clear()
        _LOADED[(path, text)] = cached
    return cached


#: The last config validated, by its file's path and content (:func:`load_pairs`).
_LOADED: dict[tuple[Path, str], PairsConfig] = {}


def _validate(path: Path, text: str) -> PairsConfig:
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"pair config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"pair config {path} must be a mapping with a 'pairs' list")
    unknown = sorted(set(raw) - {"defaults", "pairs"})
    if unknown:
        raise ConfigError(f"pair config {path}: unknown top-level keys {unknown}")
    try:
        return PairsConfig.model_validate(
            {"defaults": raw.get("defaults") or {}, "pairs": _entries(raw, path.parent)}
        )
    except ValidationError as exc:
        raise ConfigError(describe(exc, raw, text, path, PairConfig)) from None
