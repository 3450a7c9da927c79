"""Volatility features: realized variance over several windows, range estimators, the
RiskMetrics EWMA and the time-of-day profile, each known when its candle closes.

One function, :func:`volatility_features`, computes them for evaluation, training and the
volatility baselines alike (the baselines read these columns, so a baseline served from ONNX
sees the numbers it was scored on). Windows are counted in the stream's own candles and set
per timeframe: a *day* is the candles in 24 hours (24 at 1h, 288 at 5m). HAR's cascade is
day, week and month on hourly and longer timeframes, and hour, day and week on shorter ones
(a 5m stream's next hours depend on the last hour and day far more than on last month, and a
month of 5m candles is more history than most intraday files hold).

Values are variances of log returns per candle window (not annualized): ``rv_24`` is the sum
of the last 24 squared log returns. Windows never span a gap: a run of consecutive candles is
computed on its own, so the rows after a gap lack a feature until its window fills again.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from candlecast.timeframes import timeframe_ms, volatility_windows

_DAY_MS = 86_400_000
#: Half-life of the RiskMetrics EWMA in time: RiskMetrics' daily decay 0.94 has a half-life
#: of about 11 days; intraday variance decays faster, and half a day keeps the hourly EWMA
#: close to RiskMetrics' own intraday choices (decay ~0.97 at 1h). Fixed a priori, not tuned.
EWMA_HALF_LIFE_MS = _DAY_MS // 2


def candles_per_day(timeframe: str) -> int:
    """Candles in 24 hours (at least 1: a daily or weekly stream's day is one candle)."""
    return max(1, _DAY_MS // timeframe_ms(timeframe))


def ewma_decay(timeframe: str) -> float:
    """The EWMA decay per candle for this timeframe (:data:`EWMA_HALF_LIFE_MS` of half-life)."""
    half_life = max(EWMA_HALF_LIFE_MS / timeframe_ms(timeframe), 1.0)
    return float(0.5 ** (1.0 / half_life))


def har_windows(timeframe: str) -> tuple[int, int, int]:
    """HAR-RV's short, middle and long windows in candles: day, week and month, or on
    sub-hourly timeframes hour, day and week (:func:`candlecast.timeframes.volatility_windows`)."""
    return volatility_windows(timeframe)


def profile_days(timeframe: str) -> int:
    """Days of history behind the time-of-day profile: the long HAR window's."""
    return max(1, har_windows(timeframe)[2] // candles_per_day(timeframe))


def rv_windows(timeframe: str, horizons: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Every realized-variance window computed: 1, 4, 24, the HAR windows and the horizons."""
    return tuple(sorted({1, 4, 24, *har_windows(timeframe), *horizons}))


def volatility_columns(timeframe: str, horizons: tuple[int, ...] = ()) -> list[str]:
    """The feature columns :func:`volatility_features` computes, in a stable order."""
    return [*level_columns(timeframe, horizons), *relative_columns(timeframe, horizons)]


def level_columns(timeframe: str, horizons: tuple[int, ...] = ()) -> list[str]:
    """Variances in the units of the label (what the baselines read)."""
    day = candles_per_day(timeframe)
    rv = [f"rv_{w}" for w in rv_windows(timeframe, horizons)]
    ranges = [f"{name}_{w}" for name in ("parkinson", "garman_klass") for w in (1, day)]
    return [*rv, *ranges, "ewma_var"]


def relative_columns(timeframe: str, horizons: tuple[int, ...] = ()) -> list[str]:
    """Scale-free columns: each level's log per candle relative to the EWMA, and the
    time-of-day profile. Learned kinds read these, so that a regime of higher or lower
    volatility than any in their training window is not outside what their trees have seen."""
    return [f"{name}_rel" for name in level_columns(timeframe, horizons)[:-1]] + ["profile_next"]


def volatility_features(
    candles: pd.DataFrame, timeframe: str, horizons: tuple[int, ...] = ()
) -> pd.DataFrame:
    """Volatility features of validated candles (sorted by ``ts``, on the timeframe grid).

    Returns:
        One row per candle: ``candle_ts``, ``event_timestamp`` (the close) and
        :func:`volatility_columns` as float64, NaN where a window is not yet full.
    """
    ts = candles["ts"].to_numpy(dtype=np.int64)
    runs = np.concatenate([[0], np.cumsum(np.diff(ts) != timeframe_ms(timeframe))])
    parts = [_run_features(candles[runs == run], timeframe, horizons) for run in np.unique(runs)]
    out = pd.concat(parts, ignore_index=True) if parts else _run_features(candles, timeframe, ())
    out.insert(0, "candle_ts", ts)
    close = pd.to_datetime(ts + timeframe_ms(timeframe), unit="ms", utc=True)
    out.insert(0, "event_timestamp", close.astype("datetime64[us, UTC]"))
    return out


def _run_features(candles: pd.DataFrame, timeframe: str, horizons: tuple[int, ...]) -> pd.DataFrame:
    """The features of one run of consecutive candles."""
    log_close = np.log(candles["close"].to_numpy(dtype=float))
    log_open = np.log(candles["open"].to_numpy(dtype=float))
    log_hl = np.log(candles["high"].to_numpy(dtype=float) / candles["low"].to_numpy(dtype=float))
    returns = pd.Series(np.diff(log_close, prepend=np.nan))
    squared = returns**2
    out = pd.DataFrame(index=range(len(candles)))
    for window in rv_windows(timeframe, horizons):
        out[f"rv_{window}"] = squared.rolling(window).sum().to_numpy()
    parkinson = pd.Series(log_hl**2 / (4 * math.log(2)))
    garman_klass = pd.Series(0.5 * log_hl**2 - (2 * math.log(2) - 1) * (log_close - log_open) ** 2)
    day = candles_per_day(timeframe)
    for name, series in (("parkinson", parkinson), ("garman_klass", garman_klass)):
        for window in (1, day):
            out[f"{name}_{window}"] = series.rolling(window).mean().to_numpy()
    out["ewma_var"] = _ewma(squared.to_numpy(), ewma_decay(timeframe), warm_up=day)
    ewma = np.maximum(out["ewma_var"].to_numpy(), 1e-20)
    for name in list(out.columns[:-1]):
        window = int(name.rsplit("_", 1)[1])
        per_candle = out[name].to_numpy() / (window if name.startswith("rv_") else 1)
        out[f"{name}_rel"] = np.log(np.maximum(per_candle, 1e-20) / ewma)
    out["profile_next"] = _profile_next(squared, day, profile_days(timeframe))
    return out


def _ewma(squared: np.ndarray, decay: float, warm_up: int) -> np.ndarray:
    """RiskMetrics' recursion ``v_t = decay * v_{t-1} + (1 - decay) * r_t^2``, started at the
    mean of the first ``warm_up`` squared returns and NaN until then."""
    out = np.full(len(squared), np.nan)
    if len(squared) <= warm_up:
        return out
    value = float(np.nanmean(squared[1 : warm_up + 1]))
    for i in range(warm_up, len(squared)):  # a plain loop: ~30k rows in milliseconds
        value = decay * value + (1 - decay) * squared[i]
        out[i] = value
    return out


def _profile_next(squared: pd.Series, day: int, days: int) -> np.ndarray:
    """How much more (or less) variable the next candle's time of day has been: the mean
    squared return of the same time of day over the last ``days`` days, divided by the mean
    over all times of those days (1.0 on daily and longer timeframes)."""
    if day == 1:
        return np.ones(len(squared))
    same_slot = squared.shift(day - 1)  # the candle one day before the next one
    slots = sum(same_slot.shift(k * day) for k in range(days)) / days
    overall = squared.rolling(days * day).mean()
    return (slots / overall.replace(0, np.nan)).to_numpy()
