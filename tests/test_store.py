"""The conference store: TTL cache, negative cache, single-flight, batching, ``all``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import pytest

from gateway.errors import PbxTimeoutError
from gateway.pbx.conferences import Conference
from gateway.store import ConferenceStore
from tests.timing import FakeClock


def room(number: str) -> Conference:
    return Conference(number, f"Room {number}", None, None, False, True, (), True, False, None)


class CountingFetch:
    """Stands in for the PBX query: knows rooms 6400-6409, records every call."""

    def __init__(self) -> None:
        self.calls: list[Sequence[str] | str] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.known = {str(n): room(str(n)) for n in range(6400, 6410)}

    async def __call__(self, numbers: Sequence[str] | Literal["all"]) -> dict[str, Conference]:
        self.calls.append(numbers if numbers == "all" else list(numbers))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if numbers == "all":
            return dict(self.known)
        return {n: self.known[n] for n in numbers if n in self.known}


@pytest.fixture
def fetch() -> CountingFetch:
    return CountingFetch()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(fetch: CountingFetch, clock: FakeClock) -> ConferenceStore:
    return ConferenceStore(fetch, ttl=30, batch_size=100, clock=clock)


async def test_store_get_many_fetches_misses_in_one_call(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """Several misses become one fetch, answers come back in the order asked."""
    results = await store.get_many(["6402", "6400", "7777"])
    assert [r.number if isinstance(r, Conference) else r for r in results] == ["6402", "6400", None]
    assert fetch.calls == [["6402", "6400", "7777"]]


async def test_store_serves_hits_and_unknowns_from_cache_within_ttl(
    store: ConferenceStore, fetch: CountingFetch, clock: FakeClock
) -> None:
    """Within the TTL neither a known nor an unknown number is fetched again."""
    await store.get_many(["6400", "7777"])
    clock.now += 29
    again = await store.get_many(["6400", "7777"])
    assert isinstance(again[0], Conference) and again[1] is None
    assert len(fetch.calls) == 1


async def test_store_refetches_after_ttl(
    store: ConferenceStore, fetch: CountingFetch, clock: FakeClock
) -> None:
    """After the TTL the next lookup asks the PBX once more."""
    await store.get_many(["6400"])
    clock.now += 31
    await store.get_many(["6400"])
    assert fetch.calls == [["6400"], ["6400"]]


async def test_store_concurrent_misses_share_one_fetch(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """100 concurrent lookups of the same cold numbers make one fetch (single-flight)."""
    fetch.gate = asyncio.Event()
    lookups = [asyncio.create_task(store.get_many(["6400", "6401"])) for _ in range(100)]
    await asyncio.sleep(0)
    fetch.gate.set()
    results = await asyncio.gather(*lookups)
    assert len(fetch.calls) == 1
    assert all(isinstance(r[0], Conference) for r in results)


async def test_store_partial_overlap_fetches_only_new_numbers(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """A lookup overlapping an in-flight one waits for it and fetches only the rest."""
    fetch.gate = asyncio.Event()
    first = asyncio.create_task(store.get_many(["6400", "6401"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(store.get_many(["6401", "6402"]))
    await asyncio.sleep(0)
    fetch.gate.set()
    await asyncio.gather(first, second)
    assert fetch.calls == [["6400", "6401"], ["6402"]]


async def test_store_splits_only_above_batch_size(fetch: CountingFetch, clock: FakeClock) -> None:
    """Misses are split into batches of at most batch_size numbers."""
    store = ConferenceStore(fetch, ttl=30, batch_size=4, clock=clock)
    await store.get_many([str(n) for n in range(6400, 6410)])
    assert [len(call) for call in fetch.calls] == [4, 4, 2]


async def test_store_failure_is_per_number_and_not_cached(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """A failed fetch fails those numbers only, and the next lookup asks again."""
    await store.get_many(["6400"])
    fetch.fail = PbxTimeoutError("slow", endpoint="conference/query")
    results = await store.get_many(["6400", "6401"])
    assert isinstance(results[0], Conference)
    assert isinstance(results[1], PbxTimeoutError)
    fetch.fail = None
    assert isinstance((await store.get_many(["6401"]))[0], Conference)
    assert fetch.calls == [["6400"], ["6401"], ["6401"]]


async def test_store_get_all_fetches_once_and_fills_numbers(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """`all` is fetched once per TTL and later single lookups are served from it."""
    everything = await store.get_all()
    await store.get_all()
    singles = await store.get_many(["6405", "6409"])
    assert len(everything) == 10
    assert all(isinstance(r, Conference) for r in singles)
    assert fetch.calls == ["all"]


async def test_store_concurrent_get_all_share_one_fetch(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """Concurrent `all` requests on a cold cache make one fetch."""
    fetch.gate = asyncio.Event()
    tasks = [asyncio.create_task(store.get_all()) for _ in range(20)]
    await asyncio.sleep(0)
    fetch.gate.set()
    await asyncio.gather(*tasks)
    assert fetch.calls == ["all"]


async def test_store_cancelled_caller_does_not_cancel_shared_fetch(
    store: ConferenceStore, fetch: CountingFetch
) -> None:
    """A caller that gives up leaves the fetch running for the others."""
    fetch.gate = asyncio.Event()
    quitter = asyncio.create_task(store.get_many(["6400"]))
    stayer = asyncio.create_task(store.get_many(["6400"]))
    await asyncio.sleep(0)
    quitter.cancel()
    fetch.gate.set()
    (result,) = await stayer
    assert isinstance(result, Conference)
    assert len(fetch.calls) == 1


# --- lanes: misses queued behind busy calls merge into one batch ---------------------------


class Charges:
    """An ``admit`` that records what each request was charged."""

    def __init__(self) -> None:
        self.charged: list[int] = []

    def __call__(self, calls: int) -> None:
        self.charged.append(calls)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_store_misses_behind_busy_lanes_merge_into_one_call(
    fetch: CountingFetch, clock: FakeClock
) -> None:
    """With one lane busy, nine requests for nine other rooms wait in one queued batch: two
    PBX calls in all; the first two requests are charged one call each, the rest nothing."""
    store = ConferenceStore(fetch, ttl=30, batch_size=100, lanes=1, clock=clock)
    fetch.gate = asyncio.Event()
    charges = Charges()
    tasks = [
        asyncio.ensure_future(store.get_many([str(n)], admit=charges)) for n in range(6400, 6410)
    ]
    await settle()
    assert fetch.calls == [["6400"]]
    fetch.gate.set()
    results = await asyncio.gather(*tasks)
    assert [r[0].number for r in results if isinstance(r[0], Conference)] == [
        str(n) for n in range(6400, 6410)
    ]
    assert fetch.calls == [["6400"], [str(n) for n in range(6401, 6410)]]
    assert charges.charged == [1, 1]


async def test_store_queued_batch_holds_at_most_batch_size(
    fetch: CountingFetch, clock: FakeClock
) -> None:
    """A full queued batch starts another, and that one is charged as a call of its own."""
    store = ConferenceStore(fetch, ttl=30, batch_size=3, lanes=1, clock=clock)
    fetch.gate = asyncio.Event()
    charges = Charges()
    first = asyncio.ensure_future(store.get_many(["6400"], admit=charges))
    await settle()
    later = asyncio.ensure_future(store.get_many(["6401", "6402", "6403", "6404"], admit=charges))
    await settle()
    assert charges.charged == [1, 2]
    fetch.gate.set()
    await asyncio.gather(first, later)
    assert fetch.calls == [["6400"], ["6401", "6402", "6403"], ["6404"]]


async def test_store_refused_admit_queues_nothing(fetch: CountingFetch, clock: FakeClock) -> None:
    """A request whose new call is refused gets the refusal for its numbers; nothing is sent
    for them."""
    store = ConferenceStore(fetch, ttl=30, batch_size=100, lanes=1, clock=clock)

    def refuse(calls: int) -> None:
        raise PbxTimeoutError("refused", endpoint="conference/query")

    results = await store.get_many(["6400", "6401"], admit=refuse)
    assert all(isinstance(r, PbxTimeoutError) for r in results)
    assert fetch.calls == []


async def test_store_forget_while_queued_shares_the_unsent_call(
    fetch: CountingFetch, clock: FakeClock
) -> None:
    """A room forgotten (changed) while its batch waits for a lane is asked again: the
    request joins the unsent batch, whose answer is newer than the change and is kept."""
    store = ConferenceStore(fetch, ttl=30, batch_size=100, lanes=1, clock=clock)
    fetch.gate = asyncio.Event()
    busy = asyncio.ensure_future(store.get_many(["6400"]))
    await settle()
    before = asyncio.ensure_future(store.get_many(["6401"]))
    await settle()
    store.forget("6401")
    fetch.known["6401"] = room("6401")  # the PBX's new value
    after = asyncio.ensure_future(store.get_many(["6401"]))
    await settle()
    fetch.gate.set()
    await asyncio.gather(busy, before, after)
    assert fetch.calls == [["6400"], ["6401"]]
    assert store.current("6401") is not None  # kept: the call started after the change


async def test_store_100_concurrent_distinct_cold_rooms_cost_3_calls(
    fetch: CountingFetch, clock: FakeClock
) -> None:
    """Two lanes (the PBX cap), batch size 100: 100 concurrent requests for 100 different cold
    rooms are two calls sent at once and one queued batch of the other 98."""
    store = ConferenceStore(fetch, ttl=30, batch_size=100, lanes=2, clock=clock)
    fetch.gate = asyncio.Event()
    numbers = [str(n) for n in range(7000, 7100)]
    tasks = [asyncio.ensure_future(store.get_many([n])) for n in numbers]
    await settle()
    fetch.gate.set()
    await asyncio.gather(*tasks)
    assert fetch.calls == [["7000"], ["7001"], numbers[2:]]
