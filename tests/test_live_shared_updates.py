"""A room update is executed once per selection and shared (``gateway.schema.shared_updates``).

Differential: the same subscribers (selections with aliases, fragments, directives and
variables, under two identities with different scopes) over both transports, on a gateway
that shares and on one that does not (``live_share_updates``), receive the same frames.
Counts: N subscribers asking one selection cost one execution per update; two selections,
two; without sharing, N.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.live.feed import UpdateReason
from gateway.schema import shared_updates
from gateway.security.identity import MODERATE, PINS, READ
from tests.gateway_stack import Stack, StackFactory
from tests.live_clients import URQL_ACCEPT, Frames, Multipart
from tests.live_clients import admin as _admin
from tests.live_clients import connect_ws as _ws
from tests.live_helpers import SESSIONS, listing, next_of, subscribe
from tests.security_helpers import api_key_security, write_keys
from tests.test_live_transports import _tell_feed

ROOM: Final = "6401"
OTHER: Final = "6402"

PLAIN: Final = SESSIONS
ALIASED: Final = """
subscription Aliased($numbers: [String], $more: Boolean!) {
  room: conferenceSessions(numbers: $numbers) {
    ...Update
    why: reason
  }
}
fragment Update on ConferenceSessionUpdate {
  number
  session {
    people: participants { who: id ...Person status @include(if: $more) }
  }
}
fragment Person on Participant { kind number trunkName __typename }
"""
INLINE: Final = """
subscription { conferenceSessions(numbers: ["6401"]) {
  __typename reason session { ... on ConferenceSession { participants { number } } }
} }
"""
# The same operation, its fragment different.
SPREAD_REASON: Final = """
subscription Spread { conferenceSessions(numbers: ["6401"]) { ...U } }
fragment U on ConferenceSessionUpdate { reason }
"""
SPREAD_NUMBER: Final = """
subscription Spread { conferenceSessions(numbers: ["6401"]) { ...U } }
fragment U on ConferenceSessionUpdate { number session { participants { number } } }
"""

# (document, variables) per subscriber: the same selection twice, then others.
OPERATIONS: Final[list[tuple[str, dict[str, Any]]]] = [
    (PLAIN, {"numbers": [ROOM]}),
    (PLAIN, {"numbers": [ROOM]}),
    (PLAIN, {"numbers": [ROOM, OTHER]}),
    (ALIASED, {"numbers": [ROOM], "more": True}),
    (ALIASED, {"numbers": [ROOM], "more": False}),
    (INLINE, {}),
    (SPREAD_REASON, {}),
    (SPREAD_NUMBER, {}),
]
ID_KEYS: Final = frozenset({"id", "who"})


def _normalized(texts: list[str]) -> list[Any]:
    """The frames parsed, each participant id replaced by its order of first appearance
    (ids are an HMAC with a per-process key: two gateways give different ones)."""
    seen: dict[str, str] = {}

    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(item, key) for item in value]
        if key in ID_KEYS and isinstance(value, str):
            return seen.setdefault(value, f"participant-{len(seen)}")
        return value

    parsed = [json.loads(text) for text in texts]
    return [
        {**frame, "payload": walk(frame.get("payload"), None)} if "payload" in frame else frame
        for frame in parsed
    ]


@contextlib.asynccontextmanager
async def _stream(
    stack: Stack, frames: Frames, document: str, variables: dict[str, Any], key: str
) -> AsyncIterator[Multipart]:
    body = {"query": document, "variables": variables}
    headers = {"accept": URQL_ACCEPT, "x-api-key": key}
    async with stack.client.stream("POST", "/graphql", json=body, headers=headers) as response:
        assert response.status_code == 200
        yield Multipart(response, frames)


async def _next_part(stream: Multipart) -> dict[str, Any]:
    """The next part that is no heartbeat."""
    while True:
        part = await stream.part()
        assert part is not None, "the stream ended"
        if part != {}:
            return part


async def _run(gateway_stack: StackFactory, tmp_path: Path, *, share: bool) -> list[list[Any]]:
    """Every subscriber of :data:`OPERATIONS`, once per identity over WebSocket and once per
    identity over multipart, through INITIAL, a join, a second join and a leave: the frames
    each received, normalized."""
    directory = tmp_path / ("shared" if share else "unshared")
    directory.mkdir()
    stored, keys = write_keys(directory, {"reader": {READ}, "boss": {READ, PINS, MODERATE}})
    stack = await gateway_stack(security=api_key_security(stored), live_share_updates=share)
    ws_frames = [Frames() for _ in keys]
    sockets = []
    for frames, key in zip(ws_frames, keys.values(), strict=True):
        ws = await _ws(stack, frames)
        assert (await ws.init({"x-api-key": key}))["type"] == "connection_ack"
        for number, (document, variables) in enumerate(OPERATIONS):
            payload = {"query": document, "variables": variables}
            await ws.send({"id": str(number), "type": "subscribe", "payload": payload})
        sockets.append(ws)
    part_frames = [Frames() for _ in range(len(keys) * len(OPERATIONS))]
    async with contextlib.AsyncExitStack() as streams:
        parts = [
            await streams.enter_async_context(_stream(stack, frames, document, variables, key))
            for frames, (key, (document, variables)) in zip(
                part_frames,
                [(key, op) for key in keys.values() for op in OPERATIONS],
                strict=True,
            )
        ]

        async def one_update_each(extra: int = 0) -> None:
            # ``extra``: the third operation asked two rooms, so two INITIAL updates.
            for ws in sockets:
                for _ in range(len(OPERATIONS) + extra):
                    message = await ws.receive()
                    assert message["type"] == "next", message
            for index, stream in enumerate(parts):
                for _ in range(1 + (extra if index % len(OPERATIONS) == 2 else 0)):
                    await _next_part(stream)

        await one_update_each(extra=1)
        before = shared_updates.executions
        for action, member in (("join", "4009"), ("join", "4010"), ("leave", "4009")):
            await _admin(stack, action, number=ROOM, member=member)
            await _tell_feed(stack, ROOM)
            await one_update_each()
        # Per change: 7 selections x 2 identities' scopes shared, else 8 x 2 x 2 transports.
        assert shared_updates.executions - before == 3 * (14 if share else 32)
        for ws in sockets:
            await ws.connection.close()
    texts = [frames.texts for frames in ws_frames]
    for frames in part_frames:
        texts.append(frames.texts)
    # WebSocket frames interleave operations: order each connection's by operation id.
    return [
        sorted(_normalized(each), key=lambda frame: str(frame.get("id")))
        if index < len(ws_frames)
        else _normalized(each)
        for index, each in enumerate(texts)
    ]


async def test_shared_frames_equal_unshared_frames(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """Aliases, fragments, an @include variable, two rooms, two identities, both
    transports: with sharing the frames are the frames without."""
    shared = await _run(gateway_stack, tmp_path, share=True)
    unshared = await _run(gateway_stack, tmp_path, share=False)
    assert shared == unshared
    # And the frames say what they should (not two equal nothings).
    ws_reader = shared[0]
    joined = [f for f in ws_reader if f.get("id") == "3" and f["type"] == "next"][1]
    people = joined["payload"]["data"]["room"]["session"]["people"]
    assert people[0]["who"] == "participant-0" and people[0]["status"] == "JOINED"
    assert joined["payload"]["data"]["room"]["why"] == "CHANGED"
    without_status = [f for f in ws_reader if f.get("id") == "4" and f["type"] == "next"][1]
    assert "status" not in without_status["payload"]["data"]["room"]["session"]["people"][0]


async def _change(stack: Stack, action: str, member: str) -> None:
    await _admin(stack, action, number=ROOM, member=member)
    runtime = stack.gateway_runtime()
    assert runtime.feed is not None
    runtime.feed.rooms_listed(await listing(runtime), [ROOM])


@pytest.mark.parametrize("share", [True, False], ids=["shared", "unshared"])
async def test_one_execution_per_update_and_selection(
    gateway_stack: StackFactory, share: bool
) -> None:
    """Five subscribers of one selection: one execution per update (five unshared); three
    more with another selection: two per update (eight unshared). INITIAL updates are each
    subscriber's own: one execution each."""
    stack = await gateway_stack(live_share_updates=share)
    runtime = stack.gateway_runtime()
    variables = {"numbers": [ROOM]}
    first = [await subscribe(runtime, [ROOM]) for _ in range(5)]
    before = shared_updates.executions
    for iterator in first:
        assert (await next_of(iterator)).data["conferenceSessions"]["reason"] == "INITIAL"
    assert shared_updates.executions - before == 5

    before = shared_updates.executions
    await _change(stack, "join", "4009")
    results = [await next_of(iterator) for iterator in first]
    assert shared_updates.executions - before == (1 if share else 5)
    assert all(result.data == results[0].data for result in results)
    assert results[0].data["conferenceSessions"]["reason"] == "CHANGED"

    second = [
        await subscribe(runtime, document=ALIASED, variables={**variables, "more": True})
        for _ in range(3)
    ]
    for iterator in second:
        await next_of(iterator)
    before = shared_updates.executions
    await _change(stack, "leave", "4009")
    for iterator in (*first, *second):
        result = await next_of(iterator)
        assert result.errors is None
    assert shared_updates.executions - before == (2 if share else 8)
    for iterator in (*first, *second):
        await iterator.aclose()  # type: ignore[attr-defined]


async def test_an_update_keeps_at_most_max_selections_results(
    gateway_stack: StackFactory,
) -> None:
    """One more distinct selection than an update keeps: every subscriber still gets its
    answer, one execution each, and the update holds MAX_SELECTIONS results."""
    stack = await gateway_stack()
    runtime = stack.gateway_runtime()
    assert runtime.feed is not None
    count = shared_updates.MAX_SELECTIONS + 1
    documents = [
        f'subscription {{ a{n}: conferenceSessions(numbers: ["{ROOM}"]) {{ reason }} }}'
        for n in range(count)
    ]
    iterators = [await subscribe(runtime, document=document) for document in documents]
    for iterator in iterators:
        await next_of(iterator)
    async with runtime.feed.subscribe([ROOM]) as watcher:  # sees the same update objects
        assert (await next_of(watcher)).reason is UpdateReason.INITIAL
        before = shared_updates.executions
        await _change(stack, "join", "4009")
        for n, iterator in enumerate(iterators):
            result = await next_of(iterator)
            assert result.data == {f"a{n}": {"reason": "CHANGED"}}
        assert shared_updates.executions - before == count
        update = await next_of(watcher)
        assert update.reason is UpdateReason.CHANGED
        assert len(update.shared) == shared_updates.MAX_SELECTIONS
    for iterator in iterators:
        await iterator.aclose()  # type: ignore[attr-defined]
