"""Timeframe strings (ccxt notation: ``1m``, ``5m``, ``1h``, ``1d``) as durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle in milliseconds.

    Raises:
        ValueError: the string is not ``<positive int><m|h|d|w>``.
    """
    amount, unit = timeframe[:-1], timeframe[-1:]
    if unit not in _UNIT_MS or not amount.isdigit() or int(amount) <= 0:
        raise ValueError(f"unsupported timeframe {timeframe!r}: use e.g. 1m, 5m, 1h, 4h, 1d")
    return int(amount) * _UNIT_MS[unit]


def timeframe_delta(timeframe: str) -> timedelta:
    return timedelta(milliseconds=timeframe_ms(timeframe))


def to_ms(moment: datetime) -> int:
    """Unix milliseconds of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give a timezone (UTC)")
    return int(moment.timestamp() * 1000)


def ms_to_datetime(ms: int) -> datetime:
    """The aware UTC datetime of unix milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_to_iso(ms: int) -> str:
    """Unix milliseconds as an ISO-8601 UTC string (``2022-03-01T00:00:00+00:00``)."""
    return ms_to_datetime(ms).isoformat()


def timeframe_cron(timeframe: str) -> str | None:
    """The cron expression firing at every candle close of the timeframe, where one exists
    (candles aligned to the epoch: ``5m`` -> ``*/5 * * * *``, ``4h`` -> ``0 */4 * * *``,
    ``1d`` -> ``0 0 * * *``, ``1w`` -> Mondays as exchanges do); None otherwise (``7m``)."""
    amount, unit = int(timeframe[:-1]), timeframe[-1:]
    timeframe_ms(timeframe)  # validates
    if unit == "m" and 60 % amount == 0:
        return "* * * * *" if amount == 1 else f"*/{amount} * * * *"
    if unit == "h" and 24 % amount == 0:
        return "0 * * * *" if amount == 1 else f"0 */{amount} * * *"
    if timeframe == "1d":
        return "0 0 * * *"
    if timeframe == "1w":
        return "0 0 * * 1"
    return None


def volatility_windows(timeframe: str) -> tuple[int, int, int]:
    """The short, middle and long windows (in candles) of the volatility features and HAR:
    day, week and month on hourly and longer timeframes; hour, day and week on shorter ones
    (a 5m stream's next hours depend on the last hour and day far more than on last month, and
    a month of 5m candles is more history than most intraday files hold)."""
    step = timeframe_ms(timeframe)
    hour, day = 3_600_000, 86_400_000
    if step < hour:
        per_hour = hour // step
        return per_hour, 24 * per_hour, 168 * per_hour
    per_day = max(1, day // step)
    return per_day, 7 * per_day, 30 * per_day


def volatility_warmup_candles(timeframe: str) -> int:
    """Candles before a row that its volatility features read: the long window, and as long
    again for the time-of-day profile over the same span."""
    return 2 * volatility_windows(timeframe)[2] + max(1, 86_400_000 // timeframe_ms(timeframe))
