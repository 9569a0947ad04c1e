"""Defaults that hold: with the shipped limits, real traffic from one address is answered.

Request rate limiting is opt-in; the PBX-fetch budget stays on and charges a client only
for the PBX calls it really adds (misses that join a call under way or queued are free),
so concurrent services get every room while a scan of unknown numbers is still stopped.
Every stack here runs default ``SecuritySettings`` (only ``auth="none"``, which ``serve``
requires to be chosen): no limit is lifted. The gateway's clock is fake and never moves,
so no budget refills during a test: the counts are the worst case.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Final

import httpx

from gateway.security.config import SecuritySettings
from gateway.simulator import SimulatorConfig
from gateway.simulator.conference_data import generate_conferences
from tests.gateway_stack import Stack, StackFactory
from tests.timing import eventually

ROOMS: Final = [str(n) for n in range(6400, 6500)]  # 100 rooms on the simulated PBX
ONE: Final = '{ conference(number: "%s") { number name } }'
SOME: Final = "{ conferences(numbers: [%s]) { number name } }"
EVERY: Final = "{ conferences { number name } }"
# How a service asks for one room: one document, the number as a variable (a document the
# gateway has validated once; a literal per room is a new document each, validated in turn).
ONE_BY_VARIABLE: Final = "query Room($n: String!) { conference(number: $n) { number name } }"
PBX_LATENCY: Final = 0.02
"""Seconds the simulated PBX takes per call: a real one takes longer, never none."""


async def default_stack(gateway_stack: StackFactory) -> Stack:
    """Default settings against a PBX with 100 rooms that answers in 20 ms."""
    config = SimulatorConfig(conferences=generate_conferences(100), latency=PBX_LATENCY)
    return await gateway_stack(sim_config=config, security=SecuritySettings(auth="none"))


def mixed_documents(seed: int = 14) -> list[str]:
    """200 queries: single rooms (cold, then cached), lists of rooms, and the full listing."""
    rng = random.Random(seed)
    documents: list[str] = []
    for index in range(200):
        kind = index % 4
        if kind == 3 and index % 8 == 3:
            documents.append(EVERY)
        elif kind == 2:
            picked = rng.sample(ROOMS, 5)
            documents.append(SOME % ", ".join(f'"{n}"' for n in picked))
        else:
            documents.append(ONE % rng.choice(ROOMS))
    return documents


async def one_client(stack: Stack, documents: list[str]) -> list[httpx.Response]:
    """A client of its own (its own connection), sending ``documents`` one after another."""
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as client:
        return [await client.post("/graphql", json={"query": d}) for d in documents]


def room_answers(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    bodies = [response.json() for response in responses]
    assert [r.status_code for r in responses] == [200] * len(responses), bodies
    assert [b for b in bodies if "errors" in b] == []
    return bodies


async def test_defaults_200_queries_from_50_concurrent_clients_all_succeed(
    gateway_stack: StackFactory,
) -> None:
    """Default settings: 200 mixed queries from 50 concurrent clients on one address (cold
    and cached rooms, lists, the full listing) all succeed, for a handful of PBX calls."""
    stack = await default_stack(gateway_stack)
    documents = mixed_documents()
    per_client = [documents[i::50] for i in range(50)]
    results = await asyncio.gather(*(one_client(stack, d) for d in per_client))
    bodies = room_answers([response for responses in results for response in responses])
    assert len(bodies) == 200
    for body in bodies:
        data = body["data"]
        if "conference" in data:
            assert data["conference"]["number"] in ROOMS
        else:
            assert data["conferences"]
    calls = stack.calls()
    print(f"\n200 queries from 50 clients: {calls} conference/query calls")
    assert calls <= 12
    assert stack.gateway_runtime().misses.rejected == 0


async def test_defaults_50_concurrent_single_room_lookups_all_answer(
    gateway_stack: StackFactory,
) -> None:
    """One client looking up 50 existing cold rooms one request each, all at once, gets all
    50 rooms (never RATE_LIMITED): the misses merge into a few calls, charged once each."""
    stack = await default_stack(gateway_stack)
    wanted = ROOMS[:50]
    # The service's first request validates its document (a room outside the 50: one call).
    first = await stack.client.post(
        "/graphql", json={"query": ONE_BY_VARIABLE, "variables": {"n": ROOMS[50]}}
    )
    assert first.json()["data"]["conference"]["number"] == ROOMS[50]
    before = stack.calls()
    responses = await asyncio.gather(
        *(
            stack.client.post("/graphql", json={"query": ONE_BY_VARIABLE, "variables": {"n": n}})
            for n in wanted
        )
    )
    bodies = room_answers(list(responses))
    assert [b["data"]["conference"]["number"] for b in bodies] == wanted
    calls = stack.calls() - before
    print(f"\n50 concurrent cold single-room lookups: {calls} conference/query calls")
    assert calls < 10  # within the PBX-fetch burst (10), which is why none was refused
    asked = set(",".join(stack.pbx.stats.query_numbers).split(","))
    assert asked == {*wanted, ROOMS[50]}


async def test_defaults_scan_of_unknown_numbers_is_stopped_by_the_fetch_budget(
    gateway_stack: StackFactory,
) -> None:
    """A client scanning non-existent numbers gets its 10 fetches (the default burst); the
    rest of its scan waits in one held batch for a refill that never comes (the clock does
    not move), then is RATE_LIMITED with no PBX call: the PBX stays protected by default."""
    stack = await default_stack(gateway_stack)
    rng = random.Random(19)
    scanned = [str(n) for n in rng.sample(range(70_000, 80_000), 40)]
    codes: list[str | None] = []
    for number in scanned[:10]:
        body = await stack.graphql(ONE % number)
        assert body["data"] == {"conference": None}
        codes.append(body["errors"][0]["extensions"]["code"] if "errors" in body else None)
    rest = await asyncio.gather(*(stack.graphql(ONE % number) for number in scanned[10:]))
    for body in rest:
        assert body["data"] == {"conference": None}
        codes.append(body["errors"][0]["extensions"]["code"] if "errors" in body else None)
    assert codes == [None] * 10 + ["RATE_LIMITED"] * 30
    assert stack.calls() == 10
    assert stack.gateway_runtime().store.held_numbers == 30  # held, then refused: no call
    assert (await stack.graphql(ONE % scanned[0]))["data"] == {"conference": None}


async def test_defaults_lookups_past_the_fetch_budget_wait_for_one_call(
    gateway_stack: StackFactory,
) -> None:
    """A service that has spent its fetch burst (10 cold rooms, one request each) and then
    asks 40 more cold rooms at once is not refused: the misses wait in its held batch and
    go to the PBX together when the budget refills. (Without it, each of the 40 found the
    budget empty and was RATE_LIMITED; a burst of literal documents, validated in turn,
    reaches the store spaced out like this.)"""
    stack = await default_stack(gateway_stack)
    for number in ROOMS[:10]:
        assert (await stack.graphql(ONE % number))["data"]["conference"]["number"] == number
    assert stack.calls() == 10  # the burst is spent
    store = stack.gateway_runtime().store
    wanted = ROOMS[10:50]
    done = asyncio.Event()

    async def refill_while_held() -> None:
        # The fake clock never moves by itself: once misses are held, give the budget one
        # call's worth (1 per second by default), as often as a held batch may need one.
        await eventually(lambda: store.held_numbers > 0, what="a miss held")
        while not done.is_set():
            stack.clock.advance(1.0)
            await asyncio.sleep(0.5)

    refill = asyncio.create_task(refill_while_held())
    try:
        responses = await asyncio.gather(
            *(
                stack.client.post(
                    "/graphql", json={"query": ONE_BY_VARIABLE, "variables": {"n": n}}
                )
                for n in wanted
            )
        )
    finally:
        done.set()
        await refill
    bodies = room_answers(list(responses))
    assert [b["data"]["conference"]["number"] for b in bodies] == wanted
    assert not [b for b in bodies if "errors" in b]  # nobody was refused
    assert store.held_numbers >= 1
    print(f"\n40 lookups past the budget: {stack.calls() - 10} calls")
    # Each call needs a refill (one per 0.5 s of the test) and takes a whole held batch:
    # a few calls where one per room would be 40 (and, before, 40 refusals).
    assert stack.calls() - 10 < 10
