"""The circuit breaker: opening, the half-open trial, the cool-down, and its log lines."""

from __future__ import annotations

import logging

import pytest

from gateway.errors import PbxCircuitOpenError
from gateway.pbx.breaker import CircuitBreaker
from tests.timing import FakeClock


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    """Threshold failures in a row open it; calls then fail at once with a clear message."""
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        breaker.before_call("conference/query")
        breaker.failed()
    assert breaker.state.name == "CLOSED"
    breaker.before_call("conference/query")
    breaker.failed()
    assert breaker.state.name == "OPEN"
    with pytest.raises(PbxCircuitOpenError, match="not calling it for now"):
        breaker.before_call("conference/query")


def test_breaker_success_resets_the_failure_count() -> None:
    """Failures must be consecutive: one success in between starts the count again."""
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=FakeClock(0.0))
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state.name == "CLOSED"


def test_breaker_half_open_lets_exactly_one_trial_through() -> None:
    """After the cool-down one call goes through; others still fail fast until it ends."""
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    breaker.failed()
    clock.now = 31
    assert breaker.state.name == "HALF_OPEN"
    breaker.before_call("conference/query")  # the trial
    with pytest.raises(PbxCircuitOpenError):
        breaker.before_call("conference/query")
    breaker.succeeded()
    assert breaker.state.name == "CLOSED"
    breaker.before_call("conference/query")


def test_breaker_failed_trial_opens_again_for_a_full_cooldown() -> None:
    """A failed trial re-opens the breaker from that moment."""
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    breaker.failed()
    clock.now = 31
    breaker.before_call("conference/query")
    breaker.failed()
    clock.now = 60
    assert breaker.state.name == "OPEN"
    assert breaker.opened_count == 2


def test_breaker_abandoned_trial_frees_the_slot() -> None:
    """A cancelled trial does not leave the breaker stuck half-open with no trial allowed."""
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    breaker.failed()
    clock.now = 31
    breaker.before_call("conference/query")
    breaker.abandoned()
    breaker.before_call("conference/query")


def test_breaker_transitions_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    """Open (with failure count and cool-down), half-open and closed: one log line each."""
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="gateway.pbx.breaker"):
        for _ in range(5):  # two more failures while open: no second "open" line
            breaker.failed()
        clock.now = 31
        breaker.before_call("conference/query")
        breaker.succeeded()
        breaker.succeeded()  # already closed: nothing more to say
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "PBX circuit breaker open after 3 failed calls in a row: not calling the PBX for 30 s",
        "PBX circuit breaker half-open: letting one trial call (conference/query) through",
        "PBX circuit breaker closed: the PBX answered again",
    ]


def test_breaker_failed_trial_logs_reopening(caplog: pytest.LogCaptureFixture) -> None:
    """A failed half-open trial opens the breaker again, and says so."""
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.failed()
    clock.now = 11
    breaker.before_call("conference/query")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.pbx.breaker"):
        breaker.failed()
    assert [r.getMessage() for r in caplog.records] == [
        "PBX circuit breaker open after 2 failed calls in a row (the trial call failed): "
        "not calling the PBX for 10 s"
    ]
    assert breaker.opened_count == 2
