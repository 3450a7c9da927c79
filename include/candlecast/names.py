"""A forecast stream's identity and every name derived from it, in one place.

A stream is one symbol on one exchange at one timeframe: ``binance BTC/USDT 1h``. Two streams
that differ in any of the three are different streams, with their own DAGs, MLflow experiment,
registered model, deployed model, stores and forecasts. Every string built from a stream is
built here; a name assembled by hand elsewhere is a bug waiting for a rename.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from candlecast.timeframes import timeframe_ms

#: Airflow pool of the training tasks: fitting a model uses the machine's cores.
TRAINING_POOL = "candlecast_training"

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,15}/[A-Z0-9]{2,15}$")
EXCHANGE_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,31}$")


@dataclass(frozen=True, order=True)
class Stream:
    """(exchange, symbol, timeframe): the identity of a forecast stream."""

    exchange: str
    symbol: str
    timeframe: str

    def __post_init__(self) -> None:
        if not EXCHANGE_PATTERN.match(self.exchange):
            raise ValueError(
                f"exchange {self.exchange!r} is not a ccxt-style id (lower-case letters and "
                "digits, e.g. binance, kraken) or 'replay'"
            )
        if not SYMBOL_PATTERN.match(self.symbol):
            raise ValueError(f"symbol {self.symbol!r} is not BASE/QUOTE in capitals, e.g. BTC/USDT")
        timeframe_ms(self.timeframe)

    # -- parts ---------------------------------------------------------------------------------

    @property
    def slug(self) -> str:
        """File-safe symbol: ``BTC/USDT`` -> ``BTC_USDT``."""
        return self.symbol.replace("/", "_")

    @property
    def key(self) -> str:
        """Lower-case id of the stream: ``binance_btc_usdt_1h``. Unique per stream: symbols
        hold no ``_`` and timeframes no ``_``, so the parts read back unambiguously."""
        return f"{self.exchange}_{self.slug}_{self.timeframe}".lower()

    @property
    def label(self) -> str:
        """For people: ``BTC/USDT on binance at 1h``."""
        return f"{self.symbol} on {self.exchange} at {self.timeframe}"

    @property
    def market_key(self) -> str:
        """The Feast entity key: the market (exchange, symbol), shared by its timeframes so a
        model can read several timeframes' views with one key (``binance:BTC/USDT``)."""
        return f"{self.exchange}:{self.symbol}"

    def at(self, timeframe: str) -> Stream:
        """The same market at another timeframe."""
        return Stream(self.exchange, self.symbol, timeframe)

    # -- orchestration -------------------------------------------------------------------------

    @property
    def candles_dag_id(self) -> str:
        """The DAG that ingests, validates, computes and materializes the stream's candles."""
        return f"candles_{self.key}"

    @property
    def train_dag_id(self) -> str:
        """The DAG that trains, gates, exports and deploys the stream's models."""
        return f"train_{self.key}"

    @property
    def monitor_dag_id(self) -> str:
        """The DAG that checks drift and realized skill and asks for retraining."""
        return f"monitor_{self.key}"

    @property
    def dag_ids(self) -> tuple[str, str, str]:
        """Every DAG of the stream: candles, train, monitor."""
        return (self.candles_dag_id, self.train_dag_id, self.monitor_dag_id)

    @property
    def features_asset_uri(self) -> str:
        """Asset event: new validated features of the stream were materialized."""
        return f"candlecast://features/{self.exchange}/{self.slug}/{self.timeframe}"

    @property
    def retrain_asset_uri(self) -> str:
        """Asset event: monitoring asks for the stream to be retrained (drift, decay)."""
        return f"candlecast://retrain/{self.key}"

    @property
    def model_asset_uri(self) -> str:
        """Asset event: a new champion of the stream was deployed."""
        return f"candlecast://models/{self.key}/champion"

    @property
    def exchange_pool(self) -> str:
        """Airflow pool bounding concurrent calls to the stream's exchange."""
        return exchange_pool(self.exchange)

    @property
    def tags(self) -> list[str]:
        """Airflow DAG tags."""
        return [f"pair:{self.symbol}", f"exchange:{self.exchange}", f"timeframe:{self.timeframe}"]

    # -- models --------------------------------------------------------------------------------

    @property
    def experiment(self) -> str:
        """MLflow experiment."""
        return f"candlecast-{self.key}"

    @property
    def registered_model(self) -> str:
        """MLflow registered model; versions of every kind compete for its ``champion``."""
        return f"{self.key}_forecaster"

    @property
    def bento_model(self) -> str:
        """BentoML model name (tags are ``<name>:<version>``)."""
        return f"{self.key}_forecaster"

    def target_model(self, target_key: str) -> str:
        """MLflow registered model of one (target, horizon) of the stream
        (``binance_btc_usdt_1h_volatility_h24``); the baselines and learned kinds of that
        target compete for its ``champion``. ``target_key`` is :attr:`Target.key`."""
        return f"{self.key}_{target_key}"

    def target_dir(self, root: Path, target_key: str) -> Path:
        """Where a (target, horizon)'s exported versions and served champion live."""
        return root / self.key / "targets" / target_key

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags every MLflow run and experiment of the stream carries."""
        return {
            "stream": self.key,
            "pair": self.symbol,
            "exchange": self.exchange,
            "timeframe": self.timeframe,
        }

    # -- monitoring ----------------------------------------------------------------------------

    @property
    def dashboard_uid(self) -> str:
        """Grafana dashboard uid of the stream (``cc-binance_btc_usdt_1h``). Grafana allows 40
        characters: a longer key keeps its start and gains a hash, so uids stay unique."""
        uid = f"cc-{self.key}"
        if len(uid) <= 40:
            return uid
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:8]
        return f"{uid[:31]}-{digest}"

    # -- storage -------------------------------------------------------------------------------

    def candle_dir(self, root: Path) -> Path:
        """Where a candle store (raw, validated, quarantine, data docs) keeps this stream."""
        return root / self.exchange / self.slug / self.timeframe

    def feature_dir(self, root: Path) -> Path:
        """The stream's partitions of the Feast offline source (grouped by timeframe, one view
        per timeframe)."""
        return root / self.timeframe / self.exchange / self.slug

    def model_dir(self, root: Path, version: str | int) -> Path:
        """An exported model version: ``<root>/<key>/v<version>``."""
        return root / self.key / f"v{version}"

    # -- parsing -------------------------------------------------------------------------------

    @classmethod
    def from_key(cls, key: str) -> Stream:
        """The stream of a :attr:`key` (``binance_btc_usdt_1h``).

        Raises:
            ValueError: not a stream key.
        """
        parts = key.split("_")
        if len(parts) < 4:
            raise ValueError(f"{key!r} is not a stream key like binance_btc_usdt_1h")
        exchange = "_".join(parts[:-3])
        base, quote, timeframe = parts[-3:]
        return cls(exchange, f"{base}/{quote}".upper(), timeframe)


#: The Feast entity column: the market (``binance:BTC/USDT``), see ``Stream.market_key``.
ENTITY = "market"


def view_name(timeframe: str) -> str:
    """The Feast feature view of a timeframe."""
    return f"candle_features_{timeframe}"


def feature_service_name(timeframe: str, version: int = 1) -> str:
    """The Feast feature service models of a timeframe read (versioned)."""
    return f"forecast_{timeframe}_v{version}"


def exchange_pool(exchange: str) -> str:
    """Airflow pool of one exchange's fetch tasks (``exchange_binance``)."""
    return f"exchange_{exchange}"


def run_name(what: str, end: datetime, dry_run: bool = False) -> str:
    """An MLflow run's name: what it is (``train``, a kind) and its window end, marked when it
    belongs to a dry run (which promotes nothing): ``lightgbm-20220301T0000 (dry run)``."""
    return f"{what}-{end:%Y%m%dT%H%M}" + (" (dry run)" if dry_run else "")
