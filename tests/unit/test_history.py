"""The decision history in data time: which version was in force when."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from candlecast.modeling.history import (
    Decided,
    as_of,
    shadows_at,
    shadows_in_force,
    versions_at,
    versions_in_force,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _decided(hours: int, version: str) -> Decided:
    since = T0 + hours * HOUR
    return Decided(since, version, "lightgbm", since - 10 * HOUR, since, "gate", True, since)


def _ms(hours: int) -> int:
    return int((T0 + hours * HOUR).timestamp() * 1000)


HISTORY = [_decided(0, "1"), _decided(5, "2"), _decided(5, "3"), _decided(9, "4")]


def test_the_version_in_force_is_the_latest_decided_at_or_before_the_time():
    assert as_of(HISTORY, T0 - HOUR) is None
    assert as_of(HISTORY, T0 + 4 * HOUR).version == "1"
    # two decisions for the same moment: the one recorded last holds
    assert as_of(HISTORY, T0 + 5 * HOUR).version == "3"
    times = np.array([_ms(-1), _ms(0), _ms(4), _ms(5), _ms(8), _ms(9), _ms(20)])
    assert versions_at(HISTORY, times).tolist() == ["", "1", "1", "3", "3", "4", "4"]


def test_versions_in_force_for_a_span_are_only_those_some_time_of_it_uses():
    assert versions_in_force(HISTORY, _ms(1), _ms(4)) == {"1"}
    # a version superseded at the very moment it was decided is in force at no time, and a
    # decision at the span's (exclusive) end is not in it
    assert versions_in_force(HISTORY, _ms(5), _ms(9)) == {"3"}
    assert versions_in_force(HISTORY, _ms(3), _ms(10)) == {"1", "3", "4"}
    assert versions_in_force(HISTORY, _ms(-5), _ms(-1)) == set()
    times = np.arange(_ms(3), _ms(10), 3_600_000)
    assert set(versions_at(HISTORY, times)) <= versions_in_force(HISTORY, _ms(3), _ms(10))


def test_a_shadow_challenger_is_in_force_exactly_while_its_decision_holds():
    shadowed = [
        replace(HISTORY[0], challengers=("7",)),
        HISTORY[1],
        replace(HISTORY[2], challengers=("8",)),
        HISTORY[3],
    ]
    times = np.array([_ms(-1), _ms(0), _ms(4), _ms(5), _ms(8), _ms(9)])
    assert shadows_at(shadowed, times, "7").tolist() == [False, True, True, False, False, False]
    assert shadows_at(shadowed, times, "8").tolist() == [False, False, False, True, True, False]
    assert shadows_in_force(shadowed, _ms(1), _ms(6)) == {"7", "8"}
    assert shadows_in_force(shadowed, _ms(9), _ms(20)) == set()
    assert shadows_at([], times, "7").tolist() == [False] * len(times)


def test_a_line_written_before_challengers_were_recorded_reads_as_having_none():
    line = HISTORY[0].to_json().replace('"challengers": [], ', "")
    assert "challengers" not in line
    assert Decided.from_json(line).challengers == ()
    kept = replace(HISTORY[0], challengers=("7",))
    assert Decided.from_json(kept.to_json()) == kept
