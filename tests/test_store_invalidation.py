"""``ConferenceStore.forget``: a fetch that started before it never puts the old value back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Literal

import pytest

from gateway.errors import PbxTimeoutError
from gateway.pbx.conferences import Conference
from gateway.store import ConferenceStore


def room(number: str, name: str) -> Conference:
    return Conference(number, name, None, None, False, True, (), True, False, None)


@dataclasses.dataclass
class Call:
    """One fetch: what it asked, what the PBX answered (at once), and when to deliver it."""

    numbers: Sequence[str] | str
    answer: dict[str, Conference]
    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class HeldFetch:
    """The PBX answers at the moment of the call; the answer is delivered only on release,
    so a test can change the room between the two, as a real update racing a query does."""

    def __init__(self) -> None:
        self.rooms = {"6400": room("6400", "Old"), "6401": room("6401", "Other")}
        self.calls: list[Call] = []
        self.hold = True
        self.fail: Exception | None = None

    async def __call__(self, numbers: Sequence[str] | Literal["all"]) -> dict[str, Conference]:
        if numbers == "all":
            answer = dict(self.rooms)
        else:
            answer = {n: self.rooms[n] for n in numbers if n in self.rooms}
        call = Call(numbers if numbers == "all" else list(numbers), answer)
        self.calls.append(call)
        if self.hold:
            await call.release.wait()
        if self.fail is not None:
            raise self.fail
        return call.answer

    def change(self, number: str, name: str) -> None:
        """The room is changed on the PBX (a conference/update applied)."""
        self.rooms[number] = room(number, name)


@pytest.fixture
def fetch() -> HeldFetch:
    return HeldFetch()


@pytest.fixture
def store(fetch: HeldFetch) -> ConferenceStore:
    return ConferenceStore(fetch, ttl=30, stale_ttl=3600)


async def started(fetch: HeldFetch, calls: int) -> None:
    """Let the event loop run until ``calls`` fetches have reached the PBX."""
    for _ in range(100):
        if len(fetch.calls) >= calls:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {calls} fetches, saw {len(fetch.calls)}")


def names(outcomes: Sequence[Conference | Exception | None]) -> list[str | None]:
    return [o.name if isinstance(o, Conference) else None for o in outcomes]


async def test_store_forget_discards_a_fetch_that_started_before_it(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """A query answered before the change and delivered after forget() is not cached."""
    before = asyncio.create_task(store.get_many(["6400"]))
    await started(fetch, 1)
    fetch.change("6400", "New")
    store.forget("6400")
    fetch.calls[0].release.set()
    assert names(await before) == ["Old"]  # its caller asked before the change: fine
    fetch.hold = False
    assert names(await store.get_many(["6400"])) == ["New"]
    assert names(await store.get_many(["6400"])) == ["New"]
    assert len(fetch.calls) == 2  # the old answer was not kept; the new one is


async def test_store_lookup_after_forget_starts_its_own_fetch(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """A lookup after forget() does not join the older fetch still under way, and that
    older fetch finishing last does not overwrite the newer answer."""
    before = asyncio.create_task(store.get_many(["6400"]))
    await started(fetch, 1)
    fetch.change("6400", "New")
    store.forget("6400")
    after = asyncio.create_task(store.get_many(["6400"]))
    await started(fetch, 2)
    fetch.calls[1].release.set()
    assert names(await after) == ["New"]
    fetch.calls[0].release.set()  # the old answer arrives last
    assert names(await before) == ["Old"]
    assert names(await store.get_many(["6400"])) == ["New"]
    assert len(fetch.calls) == 2


async def test_store_forget_spares_other_numbers_of_the_same_fetch(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """Only the forgotten number's answer is dropped; its batch-mates are cached."""
    before = asyncio.create_task(store.get_many(["6400", "6401"]))
    await started(fetch, 1)
    fetch.change("6400", "New")
    store.forget("6400")
    fetch.calls[0].release.set()
    await before
    fetch.hold = False
    assert names(await store.get_many(["6401"])) == ["Other"]
    assert len(fetch.calls) == 1
    assert names(await store.get_many(["6400"])) == ["New"]
    assert len(fetch.calls) == 2


async def test_store_listing_that_started_before_forget_is_not_kept(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """An ``all`` listing in flight during forget() keeps the other rooms, not the list
    itself nor the changed room; a listing asked after forget() is a fetch of its own."""
    before = asyncio.create_task(store.get_all())
    await started(fetch, 1)
    fetch.change("6400", "New")
    store.forget("6400")
    after = asyncio.create_task(store.get_all())
    await started(fetch, 2)
    fetch.calls[1].release.set()
    assert names(await after) == ["New", "Other"]
    fetch.calls[0].release.set()
    assert names(await before) == ["Old", "Other"]
    fetch.hold = False
    assert names(await store.get_all()) == ["New", "Other"]
    assert names(await store.get_many(["6400", "6401"])) == ["New", "Other"]
    assert len(fetch.calls) == 2


async def test_store_fetch_started_after_forget_is_kept(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """forget() blocks only older fetches: the next answer is cached as usual."""
    fetch.hold = False
    await store.get_many(["6400"])
    fetch.change("6400", "New")
    store.forget("6400")
    assert names(await store.get_many(["6400"])) == ["New"]
    assert names(await store.get_many(["6400"])) == ["New"]
    assert len(fetch.calls) == 2


async def test_store_forget_drops_the_stale_copy_too(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """After forget() the old value is not served stale when the PBX cannot answer."""
    fetch.hold = False
    await store.get_many(["6400"])
    store.forget("6400")
    fetch.fail = PbxTimeoutError("down", endpoint="conference/query")
    (outcome,) = await store.get_many(["6400"])
    assert isinstance(outcome, PbxTimeoutError)


async def test_store_forget_twice_during_one_fetch_keeps_only_the_last_readers_answer(
    store: ConferenceStore, fetch: HeldFetch
) -> None:
    """Two changes in a row: only a fetch that began after the second one is kept."""
    first = asyncio.create_task(store.get_many(["6400"]))
    await started(fetch, 1)
    fetch.change("6400", "One")
    store.forget("6400")
    second = asyncio.create_task(store.get_many(["6400"]))
    await started(fetch, 2)
    fetch.change("6400", "Two")
    store.forget("6400")
    third = asyncio.create_task(store.get_many(["6400"]))
    await started(fetch, 3)
    for call in reversed(fetch.calls):  # deliver newest first: the worst order
        call.release.set()
    assert [names(await t) for t in (first, second, third)] == [["Old"], ["One"], ["Two"]]
    fetch.hold = False
    assert names(await store.get_many(["6400"])) == ["Two"]
    assert len(fetch.calls) == 3
