"""Concurrent changes and queries of one room end with the PBX's last write in the cache.

The simulator computes an answer at the end of its latency, so to play a query answered
before a change but delivered after it, the tests wrap its ``conference/query`` handler.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.simulator import SimulatorConfig, SimulatorState
from gateway.simulator.endpoints import ENDPOINTS, Body
from tests.gateway_stack import StackFactory
from tests.mutation_helpers import UPDATE_NO_PINS, on_pbx, room_name, update

ROOM_QUERY = (
    '{ conference(number: "6400") { name } a: conferences(numbers: ["6400", "6401"]) { name } }'
)


async def test_mutation_concurrent_updates_and_queries_end_in_the_pbx_last_write(
    gateway_stack: StackFactory, monkeypatch: pytest.MonkeyPatch, rng: random.Random
) -> None:
    """Ten concurrent renames of one room, among thirty concurrent queries and `all`
    listings, with random PBX latency before each answer and random delivery delay after
    each query's answer (a slow network): afterwards the gateway's cached room (served
    with no PBX call) is the name the PBX holds, in five rounds."""
    original = ENDPOINTS["conference/query"]

    async def slow_delivery(state: SimulatorState, body: Body, request: Request) -> Response:
        response = await original(state, body, request)
        await asyncio.sleep(rng.uniform(0, 0.05))
        return response

    monkeypatch.setitem(ENDPOINTS, "conference/query", slow_delivery)
    stack = await gateway_stack(sim_config=SimulatorConfig(latency=0.005, jitter=0.04))
    for round_ in range(5):
        renames = [
            update(stack, UPDATE_NO_PINS, number="6400", name=f"Round {round_} name {i}")
            for i in range(10)
        ]
        reads: list[Any] = [stack.graphql(ROOM_QUERY) for _ in range(25)]
        reads += [stack.graphql("{ conferences { number name } }") for _ in range(5)]
        mixed = [item for pair in zip(renames, reads, strict=False) for item in pair]
        mixed += reads[len(renames) :]
        results = await asyncio.gather(*mixed)
        assert all("errors" not in r for r in results), [r for r in results if "errors" in r]
        final = on_pbx(stack, "6400")["name"]
        assert final.startswith(f"Round {round_} name ")
        calls = stack.calls("conference/query")
        assert await room_name(stack, "6400") == final
        assert stack.calls("conference/query") == calls  # answered from the cache
        listing = await stack.graphql("{ conferences { number name } }")
        assert {c["number"]: c["name"] for c in listing["data"]["conferences"]}["6400"] == final
    assert stack.calls("conference/update") == 50


async def test_mutation_query_answered_before_the_change_does_not_come_back(
    gateway_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query the PBX answered before the change, delivered after it: the change's
    read-back neither waits for nor reuses it, and it does not overwrite the new room."""
    stack = await gateway_stack()
    answered, release = asyncio.Event(), asyncio.Event()
    original = ENDPOINTS["conference/query"]

    async def held_once(state: SimulatorState, body: Body, request: Request) -> Response:
        response = await original(state, body, request)
        if not answered.is_set():
            answered.set()  # the answer holds the room as it was
            await release.wait()
        return response

    monkeypatch.setitem(ENDPOINTS, "conference/query", held_once)
    before = asyncio.create_task(room_name(stack, "6400"))
    await asyncio.wait_for(answered.wait(), timeout=10)
    result = await asyncio.wait_for(
        update(stack, UPDATE_NO_PINS, number="6400", name="Changed"), timeout=10
    )
    assert result["data"]["updateConference"]["conference"]["name"] == "Changed"
    release.set()
    assert await before == "Sales"  # asked before the change, answered so
    assert await room_name(stack, "6400") == "Changed"
    assert stack.calls("conference/query") == 2
