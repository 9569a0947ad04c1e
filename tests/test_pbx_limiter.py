"""The PBX limiter: the concurrency cap, the bounded wait in front of it, and the linger
that keeps a slot taken while the PBX is presumably still working on a call given up on."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import PbxBusyError, PbxTimeoutError
from gateway.pbx.limiter import PbxLimiter


async def test_limiter_caps_concurrency() -> None:
    """No more than max_concurrency holders at once."""
    limiter = PbxLimiter(max_concurrency=2, max_waiting=100)
    peak = 0

    async def work() -> None:
        nonlocal peak
        async with limiter.slot("conference/query"):
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0)

    await asyncio.gather(*(work() for _ in range(20)))
    assert peak == 2


async def test_limiter_refuses_beyond_the_wait_queue() -> None:
    """With every slot busy and the queue full, a caller gets PBX_BUSY at once."""
    limiter = PbxLimiter(max_concurrency=1, max_waiting=2)
    release = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot("conference/query"):
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(3)]  # 1 running, 2 waiting
    for _ in range(3):  # let each task run to its first await: one holds, two queue
        await asyncio.sleep(0)
    assert limiter.waiting == 2
    with pytest.raises(PbxBusyError) as error:
        async with limiter.slot("conference/query"):
            pass
    assert error.value.code == "PBX_BUSY"
    release.set()
    await asyncio.gather(*tasks)
    assert (limiter.in_flight, limiter.waiting, limiter.max_waiting_seen, limiter.rejected) == (
        0,
        0,
        2,
        1,
    )


async def test_limiter_keeps_a_timed_out_calls_slot_for_the_linger() -> None:
    """A call that timed out after reaching the PBX keeps its slot for `linger` seconds."""
    limiter = PbxLimiter(max_concurrency=1, max_waiting=10, linger=0.2)
    with pytest.raises(PbxTimeoutError):
        async with limiter.slot("conference/query"):
            raise PbxTimeoutError("slow", endpoint="conference/query")
    assert limiter.in_flight == 1  # still counted: the PBX is presumably still on it
    acquired = asyncio.Event()

    async def next_call() -> None:
        async with limiter.slot("conference/query"):
            acquired.set()

    waiter = asyncio.create_task(next_call())
    await asyncio.sleep(0)
    assert not acquired.is_set()
    await asyncio.wait_for(waiter, timeout=5)
    assert limiter.in_flight == 0


async def test_limiter_frees_at_once_when_the_connection_never_opened() -> None:
    """A connect timeout never reached the PBX: its slot is free at once."""
    limiter = PbxLimiter(max_concurrency=1, max_waiting=10, linger=60)
    with pytest.raises(PbxTimeoutError):
        async with limiter.slot("conference/query"):
            raise PbxTimeoutError("no route", endpoint="conference/query", reached_pbx=False)
    assert limiter.in_flight == 0
