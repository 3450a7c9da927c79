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
