"""The held batch of a client's misses past its fetch budget (gateway.held_misses)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import PbxUnavailableError, RateLimitedError
from gateway.held_misses import HeldMisses

REFUSED = RateLimitedError("no budget", retry_after=1)


def never(calls: int) -> None:
    raise AssertionError("admit is asked only when the batch is released")


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


def released_into(sent: list[list[str]]) -> HeldMisses[str]:
    def release(numbers: list[str], admit: object) -> dict[str, asyncio.Future[str]]:
        sent.append(numbers)
        futures = {}
        for number in numbers:
            futures[number] = future = asyncio.get_running_loop().create_future()
            future.set_result(f"room {number}")
        return futures

    return HeldMisses(release, batch_size=3, clock=lambda: 0.0, sleep=no_wait)


async def test_a_clients_misses_join_one_batch_released_once() -> None:
    sent: list[list[str]] = []
    held = released_into(sent)
    first = held.hold("svc", ["1", "2"], REFUSED, never, deadline=10.0)
    second = held.hold("svc", ["2", "3"], REFUSED, never, deadline=10.0)
    assert first is not None and second is not None
    assert await second["3"] == "room 3" and await first["1"] == "room 1"
    assert sent == [["1", "2", "3"]]  # one call's worth, each number once
    assert held.held_numbers == 3


async def test_refused_now_when_full_past_the_deadline_or_not_a_budget_refusal() -> None:
    sent: list[list[str]] = []
    held = released_into(sent)
    assert held.hold("svc", ["1", "2", "3", "4"], REFUSED, never, deadline=10.0) is None
    assert held.hold("svc", ["1"], REFUSED, never, deadline=0.5) is None  # 1 s wait: too late
    down = PbxUnavailableError("down", endpoint="conference/query")
    assert held.hold("svc", ["1"], down, never, deadline=10.0) is None
    assert held.hold("other", ["1", "2", "3"], REFUSED, never, deadline=10.0) is not None
    assert held.hold("other", ["4"], REFUSED, never, deadline=10.0) is None  # full
    assert held.held_numbers == 3
    await held.aclose()
    assert sent == []


async def test_a_release_still_refused_fails_every_held_number() -> None:
    def release(numbers: list[str], admit: object) -> dict[str, asyncio.Future[str]]:
        raise REFUSED

    held: HeldMisses[str] = HeldMisses(release, batch_size=5, clock=lambda: 0.0, sleep=no_wait)
    futures = held.hold("svc", ["1", "2"], REFUSED, never, deadline=10.0)
    assert futures is not None
    for future in futures.values():
        with pytest.raises(RateLimitedError):
            await future
