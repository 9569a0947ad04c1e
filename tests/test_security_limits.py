"""Operation limits: depth, aliases, tokens, body size, numbers, batches.

Each rejection is a coded GraphQL error and costs the PBX nothing: the gateway runs with
``login_at_start=False``, so even a login would show in the simulator's counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import anonymous_security, codes, refusal

TOO_LARGE = "OPERATION_TOO_LARGE"


async def quiet_stack(gateway_stack: StackFactory, **security: Any) -> Stack:
    """Anonymous readers, unlimited rates, the given limits, and no start-up login."""
    return await gateway_stack(
        security=anonymous_security([READ], **security), login_at_start=False
    )


def assert_pbx_untouched(stack: Stack) -> None:
    assert dict(stack.pbx.stats.calls) == {}


def aliases(count: int) -> str:
    """``count`` aliased conference fields, each a different room number."""
    fields = " ".join(f'r{i}: conference(number: "{6400 + i}") {{ number }}' for i in range(count))
    return "{ " + fields + " }"


ROOM = '{ conference(number: "6400") { number } }'
ROOM_BY_FRAGMENT = '{ conference(number: "6400") { ...F } } fragment F on Conference { number }'
NESTED_INTROSPECTION = (
    "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }"
)


@pytest.mark.parametrize("document", [ROOM, ROOM_BY_FRAGMENT], ids=["inline", "fragment"])
async def test_limits_depth_over_maximum_is_refused(
    gateway_stack: StackFactory, document: str
) -> None:
    """A document nested past the depth limit (inline or through a fragment) is
    OPERATION_TOO_LARGE and executes nothing.

    The schema's data is one level deep, so the limit (at least 2 from the environment)
    cannot bite today; a limit of 0, set directly, proves it is wired in.
    """
    stack = await quiet_stack(gateway_stack, max_depth=0)
    body = await stack.graphql(document)
    assert body.get("data") is None
    assert codes(body) == [TOO_LARGE]
    assert_pbx_untouched(stack)


async def test_limits_depth_at_maximum_is_answered(gateway_stack: StackFactory) -> None:
    """At the depth limit a document is answered (the limit is not off by one)."""
    stack = await quiet_stack(gateway_stack, max_depth=1)
    assert await stack.graphql(ROOM_BY_FRAGMENT) == {"data": {"conference": {"number": "6400"}}}


async def test_limits_nested_introspection_is_refused(gateway_stack: StackFactory) -> None:
    """With introspection on, a fan-out of nested `fields { type { fields` is refused (the
    depth limiter skips introspection; graphql-core's introspection-depth rule stops it)."""
    stack = await quiet_stack(gateway_stack, introspection=True)
    body = await stack.graphql(NESTED_INTROSPECTION)
    assert body.get("data") is None
    assert len(codes(body)) == 1
    assert codes(body)[0] in {TOO_LARGE, "GRAPHQL_VALIDATION_FAILED"}
    assert_pbx_untouched(stack)


async def test_limits_aliases_over_maximum_are_refused(gateway_stack: StackFactory) -> None:
    """max_aliases + 1 aliases: OPERATION_TOO_LARGE, no PBX call."""
    stack = await quiet_stack(gateway_stack, max_aliases=50)
    body = await stack.graphql(aliases(51))
    assert body.get("data") is None
    assert codes(body) == [TOO_LARGE]
    assert_pbx_untouched(stack)


async def test_limits_aliases_at_maximum_make_one_batch(gateway_stack: StackFactory) -> None:
    """Exactly max_aliases aliases are answered, batched into one conference/query (plus the
    one `all` listing that proves the numbers the batch left out unknown)."""
    stack = await quiet_stack(gateway_stack, max_aliases=50)
    body = await stack.graphql(aliases(50))
    assert "errors" not in body
    assert body["data"]["r1"] == {"number": "6401"}
    batch, proof = stack.pbx.stats.query_numbers
    assert len(batch.split(",")) == 50
    assert proof == "all"


async def test_limits_tokens_over_maximum_are_refused(gateway_stack: StackFactory) -> None:
    """A huge document (3,000 fields, under the body limit) is refused by the token limit."""
    stack = await quiet_stack(gateway_stack)
    document = '{ conference(number: "6400") { ' + "number " * 3000 + "} }"
    body = await stack.graphql(document)
    assert body.get("data") is None
    assert codes(body) == [TOO_LARGE]
    assert_pbx_untouched(stack)


async def test_limits_body_over_maximum_is_413(gateway_stack: StackFactory) -> None:
    """A body over max_body_bytes: HTTP 413 OPERATION_TOO_LARGE before any parsing."""
    stack = await quiet_stack(gateway_stack, max_body_bytes=1024)
    document = '{ conference(number: "6400") { number } }' + " " * 2000
    response = await stack.client.post("/graphql", json={"query": document})
    assert "1024" in refusal(response, 413, TOO_LARGE)
    assert_pbx_untouched(stack)


async def test_limits_body_streamed_without_length_is_cut_off(gateway_stack: StackFactory) -> None:
    """A chunked body with no Content-Length is counted as it arrives and refused past the limit."""
    stack = await quiet_stack(gateway_stack, max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ conference(number: \\"6400\\") { number } }", "pad": "'
        for _ in range(64):
            yield b"x" * 256
        yield b'"}'

    response = await stack.client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    refusal(response, 413, TOO_LARGE)
    assert_pbx_untouched(stack)


async def test_limits_body_at_maximum_is_accepted(gateway_stack: StackFactory) -> None:
    """A body of exactly max_body_bytes is served (the limit is inclusive)."""
    stack = await quiet_stack(gateway_stack, max_body_bytes=1024)
    prefix = b'{"query": "{ conference(number: \\"6400\\") { number } }", "pad": "'
    body = prefix + b"x" * (1024 - len(prefix) - 2) + b'"}'
    assert len(body) == 1024
    response = await stack.client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.json() == {"data": {"conference": {"number": "6400"}}}


async def test_limits_numbers_over_maximum_are_bad_input(gateway_stack: StackFactory) -> None:
    """More distinct numbers than GATEWAY_MAX_NUMBERS in one request: BAD_USER_INPUT, no call."""
    stack = await quiet_stack(gateway_stack)
    numbers = ", ".join(f'"{n}"' for n in range(7000, 7101))
    body = await stack.graphql("{ conferences(numbers: [" + numbers + "]) { number } }")
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "100" in body["errors"][0]["message"]
    assert_pbx_untouched(stack)


async def test_limits_batch_when_batching_is_off_is_bad_input(gateway_stack: StackFactory) -> None:
    """A JSON array of operations with batching off: 400 BAD_USER_INPUT, nothing executed."""
    stack = await quiet_stack(gateway_stack)
    batch = [{"query": '{ conference(number: "6400") { number } }'}] * 2
    response = await stack.client.post("/graphql", json=batch)
    refusal(response, 400, "BAD_USER_INPUT")
    assert_pbx_untouched(stack)


async def test_limits_batch_over_maximum_is_too_large(gateway_stack: StackFactory) -> None:
    """Batching on, more operations than GATEWAY_MAX_BATCH: 400 OPERATION_TOO_LARGE."""
    stack = await quiet_stack(gateway_stack, batching=True, max_batch=2)
    batch = [{"query": f'{{ conference(number: "{n}") {{ number }} }}'} for n in (6400, 6401, 6402)]
    response = await stack.client.post("/graphql", json=batch)
    refusal(response, 400, TOO_LARGE)
    assert_pbx_untouched(stack)


async def test_limits_batch_within_maximum_is_answered_in_order(
    gateway_stack: StackFactory,
) -> None:
    """Batching on, up to GATEWAY_MAX_BATCH operations: one answer per operation, in order."""
    stack = await quiet_stack(gateway_stack, batching=True, max_batch=2)
    batch = [{"query": f'{{ conference(number: "{n}") {{ number }} }}'} for n in (6400, 6401)]
    response = await stack.client.post("/graphql", json=batch)
    assert response.json() == [
        {"data": {"conference": {"number": "6400"}}},
        {"data": {"conference": {"number": "6401"}}},
    ]


async def test_limits_batch_items_that_are_not_objects_are_bad_input(
    gateway_stack: StackFactory,
) -> None:
    """Batching on, an array of non-objects: a coded 400, never a 500."""
    stack = await quiet_stack(gateway_stack, batching=True, max_batch=5)
    response = await stack.client.post("/graphql", json=[1, "two", None])
    refusal(response, 400, "BAD_USER_INPUT")
    assert_pbx_untouched(stack)


async def test_limits_each_batched_operation_is_limited(gateway_stack: StackFactory) -> None:
    """The alias limit applies to every operation of a batch, not only the first."""
    stack = await quiet_stack(gateway_stack, batching=True, max_batch=2, max_aliases=3)
    batch = [{"query": aliases(2)}, {"query": aliases(4)}]
    first, second = (await stack.client.post("/graphql", json=batch)).json()
    assert "errors" not in first
    assert codes(second) == [TOO_LARGE]
