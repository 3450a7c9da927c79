"""The online store's circuit breaker (serving/breaker.py), on an injected clock."""

import pytest

from candlecast.serving.breaker import CircuitBreaker, StoreUnavailableError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise TimeoutError("Timeout reading from 127.0.0.1:6379")


def test_a_failure_opens_the_circuit_and_later_calls_are_refused_without_trying():
    clock, tried = Clock(), []
    breaker = CircuitBreaker("online store", cooldown_s=5, clock=clock)
    assert breaker.call(lambda: 1) == 1 and breaker.outage() is None
    with pytest.raises(TimeoutError):
        breaker.call(fail)
    outage = breaker.outage()
    assert outage is not None and outage.reason.startswith("TimeoutError: Timeout reading")
    clock.now += 4.9
    with pytest.raises(StoreUnavailableError, match=r"online store unavailable since .* next try"):
        breaker.call(lambda: tried.append(1))
    assert tried == [] and not breaker.trial_due()


def test_after_the_cooldown_one_trial_goes_through_and_its_outcome_decides():
    clock = Clock()
    breaker = CircuitBreaker("online store", cooldown_s=5, clock=clock)
    with pytest.raises(TimeoutError):
        breaker.call(fail)
    since = breaker.outage().since
    clock.now += 5
    assert breaker.trial_due()
    with pytest.raises(TimeoutError):
        breaker.call(fail)  # the trial failed: open for another cooldown, same outage
    assert breaker.outage().since == since and breaker.outage().failures == 2
    with pytest.raises(StoreUnavailableError):
        breaker.call(lambda: 1)
    clock.now += 5
    assert breaker.call(lambda: 2) == 2  # the trial succeeded: closed
    assert breaker.outage() is None and breaker.call(lambda: 3) == 3


def test_only_one_caller_gets_the_trial():
    clock = Clock()
    breaker = CircuitBreaker("online store", cooldown_s=5, clock=clock)
    with pytest.raises(TimeoutError):
        breaker.call(fail)
    clock.now += 6
    entered = []

    def trial() -> int:
        entered.append(1)
        with pytest.raises(StoreUnavailableError):  # a second caller while the trial runs
            breaker.call(lambda: entered.append(2))
        return 1

    assert breaker.call(trial) == 1 and entered == [1]


def test_a_threshold_above_one_tolerates_single_failures():
    breaker = CircuitBreaker("online store", threshold=2, clock=Clock())
    with pytest.raises(TimeoutError):
        breaker.call(fail)
    assert breaker.outage() is None and breaker.call(lambda: 1) == 1
