"""Features: one function computes them for training, backfills and serving alike.

Every feature of the row for a candle uses only that candle and earlier ones, so the row is
known when the candle closes; its ``event_timestamp`` is the close time. The target (next
candle's log return) is computed separately and never stored as a feature.

Each row also carries the same features of two higher timeframes of the stream
(:data:`CONTEXT_MULTIPLES` times its own: 5m -> 15m and 1h), aligned as of the row's close:
the newest higher candle that had closed by then, never one still open, and none at all when
a gap left the newest complete higher candle further back than one higher period. Kinds that
read several timeframes (``multi_timeframe``) take :data:`MULTI_TIMEFRAME_COLUMNS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from candlecast.names import ENTITY as ENTITY  # the Feast entity column, named in names.py
from candlecast.timeframes import timeframe_ms

#: Model inputs, in the order the models see them.
FEATURE_COLUMNS = [
    "ret_1",
    "ret_3",
    "ret_6",
    "ret_12",
    "ret_24",
    "range_hl",
    "body_oc",
    "volatility_24",
    "rsi_14",
    "macd_hist",
    "atr_14",
    "bb_pctb_20",
    "volume_z_24",
    "hour_sin",
    "hour_cos",
]
#: Higher timeframes every row carries, as multiples of the stream's own timeframe.
CONTEXT_MULTIPLES = (3, 12)
#: The higher timeframes' features (``rsi_14@x12``), in the order models see them.
HIGHER_COLUMNS = [f"{name}@x{m}" for m in CONTEXT_MULTIPLES for name in FEATURE_COLUMNS]
#: Inputs of multi-timeframe kinds: the stream's own features, then each higher timeframe's.
MULTI_TIMEFRAME_COLUMNS = [*FEATURE_COLUMNS, *HIGHER_COLUMNS]
#: Stored beside the features for serving (price and age of the forecast), not model inputs.
CONTEXT_COLUMNS = ["close", "candle_ts"]


def compute_features(candles: pd.DataFrame, timeframe: str, market: str) -> pd.DataFrame:
    """Feature rows for validated candles (sorted by ``ts``, on the timeframe grid).

    Args:
        candles: columns ``ts, open, high, low, close, volume``.
        timeframe: the candles' timeframe, e.g. ``1h``.
        market: the entity key written in column ``market`` (``binance:BTC/USDT``).

    Returns:
        One row per candle whose features are all defined, with ``market``,
        ``event_timestamp`` (candle close, UTC), the feature and context columns.

    Windows never span a gap: each run of consecutive candles is computed on its own, so
    the first candles after a gap (until the longest window fills again) get no row.
    """
    rows = _features(candles, timeframe, market)
    for multiple in CONTEXT_MULTIPLES:
        rows = _with_higher(rows, candles, timeframe, multiple, market)
    return rows


def _features(candles: pd.DataFrame, timeframe: str, market: str) -> pd.DataFrame:
    """The stream's own features, each run of consecutive candles computed alone."""
    ts = candles["ts"].to_numpy()
    runs = np.concatenate([[0], np.cumsum(np.diff(ts) != timeframe_ms(timeframe))])
    parts = [_run_features(candles[runs == run], timeframe, market) for run in np.unique(runs)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return _run_features(candles.iloc[:0], timeframe, market)
    return pd.concat(parts, ignore_index=True)


def _with_higher(
    rows: pd.DataFrame, candles: pd.DataFrame, timeframe: str, multiple: int, market: str
) -> pd.DataFrame:
    """``rows`` with the features of the ``multiple`` x higher timeframe, as of each close."""
    from candlecast.data.resample import resample
    from candlecast.data.schema import CANDLE_COLUMNS

    higher_ms = timeframe_ms(timeframe) * multiple
    higher_tf = f"{higher_ms // 60_000}m"
    names = {name: f"{name}@x{multiple}" for name in FEATURE_COLUMNS}
    higher = pd.DataFrame(columns=["event_timestamp", *names.values()])
    if len(candles):
        bars = resample(candles[CANDLE_COLUMNS], timeframe, higher_tf)
        if len(bars):
            found = _features(bars, higher_tf, market)
            higher = found[["event_timestamp", *FEATURE_COLUMNS]].rename(columns=names)
    if rows.empty:
        return rows.assign(**{column: np.float32(np.nan) for column in names.values()})
    # as of each row's close: the newest higher candle closed by then, within one period
    merged = pd.merge_asof(
        rows.sort_values("event_timestamp"),
        higher.astype({"event_timestamp": rows["event_timestamp"].dtype}),
        on="event_timestamp",
        direction="backward",
        tolerance=pd.Timedelta(milliseconds=higher_ms - 1),
    )
    merged[list(names.values())] = merged[list(names.values())].astype(np.float32)
    return merged.reset_index(drop=True)


def _run_features(candles: pd.DataFrame, timeframe: str, market: str) -> pd.DataFrame:
    """Features of consecutive candles (no gap inside)."""
    close = candles["close"].to_numpy(dtype=float)
    high = candles["high"].to_numpy(dtype=float)
    low = candles["low"].to_numpy(dtype=float)
    log_close = np.log(close)
    out = pd.DataFrame(index=candles.index)
    for lag in (1, 3, 6, 12, 24):
        out[f"ret_{lag}"] = log_close - pd.Series(log_close).shift(lag).to_numpy()
    out["range_hl"] = np.log(high / low)
    out["body_oc"] = log_close - np.log(candles["open"].to_numpy(dtype=float))
    out["volatility_24"] = out["ret_1"].rolling(24).std()
    out["rsi_14"] = talib.RSI(close, timeperiod=14) / 100.0
    out["macd_hist"] = talib.MACD(close, 12, 26, 9)[2] / close
    out["atr_14"] = talib.ATR(high, low, close, timeperiod=14) / close
    upper, _, lower = talib.BBANDS(close, timeperiod=20)
    out["bb_pctb_20"] = (close - lower) / np.where(upper > lower, upper - lower, np.nan)
    log_volume = np.log1p(candles["volume"].clip(lower=0))
    rolling = log_volume.rolling(24)
    out["volume_z_24"] = (log_volume - rolling.mean()) / rolling.std().replace(0, np.nan)
    hours = (candles["ts"] // 3_600_000) % 24
    out["hour_sin"] = np.sin(2 * np.pi * hours / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hours / 24)
    out["close"] = close
    out["candle_ts"] = candles["ts"].astype("int64")
    out.insert(0, "event_timestamp", _close_time(candles["ts"], timeframe))
    out.insert(0, ENTITY, market)
    out = out.replace([np.inf, -np.inf], np.nan).dropna(subset=FEATURE_COLUMNS)
    # Models see float32 features everywhere (the ONNX input type), so training, parity
    # checks and serving all use exactly the values the served model gets.
    out[FEATURE_COLUMNS] = out[FEATURE_COLUMNS].astype(np.float32)
    return out.reset_index(drop=True)


def next_return(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The target for each candle: log return of the next candle, with its prediction time.

    Only pairs of consecutive candles count: after a gap there is no target.
    """
    ts = candles["ts"].to_numpy()
    log_close = np.log(candles["close"].to_numpy(dtype=float))
    consecutive = np.diff(ts) == timeframe_ms(timeframe)
    target = pd.DataFrame(
        {
            "event_timestamp": _close_time(candles["ts"], timeframe).iloc[:-1].to_numpy(),
            "target": np.diff(log_close),
        }
    )
    return target[consecutive].reset_index(drop=True)


def _close_time(ts: pd.Series, timeframe: str) -> pd.Series:
    # Microsecond precision: the Feast DuckDB offline store cannot cast nanosecond timestamps.
    return pd.to_datetime(ts + timeframe_ms(timeframe), unit="ms", utc=True).astype(
        "datetime64[us, UTC]"
    )
