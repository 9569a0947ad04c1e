"""The response cache: identical reads answered without execution, never with old data."""

from __future__ import annotations

from gateway.security.api_keys import StoredKey, hash_key, new_key
from gateway.security.config import SecuritySettings
from gateway.security.identity import PINS, READ
from tests.gateway_stack import Stack, StackFactory

WALL = 'query Wall { conference(number: "6401") { name participantPassword } }'


def responses_cached(stack: Stack) -> float:
    """The gateway's own count of answers served from the response cache."""
    registry = stack.gateway_runtime().metrics.registry
    value = registry.get_sample_value("gateway_response_cache_hits_total")
    return 0.0 if value is None else value


async def test_response_cache_answers_a_repeat_without_execution(
    gateway_stack: StackFactory,
) -> None:
    """The same document again: the same answer, from the cache, with no PBX call."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    first = await stack.graphql(WALL)
    second = await stack.graphql(WALL)
    assert second == first
    assert responses_cached(stack) == 1
    assert stack.calls() == 1


async def test_response_cache_is_not_used_after_the_data_refreshed(
    gateway_stack: StackFactory,
) -> None:
    """Once the rooms it was built from are refetched, the kept answer is not served."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql(WALL)
    stack.pbx.book.update({"number": "6401", "name": "PM renamed"})
    stack.clock.advance(31)
    after = await stack.graphql(WALL)
    assert after["data"]["conference"]["name"] == "PM renamed"
    assert responses_cached(stack) == 0


async def test_response_cache_keeps_answers_per_scope(gateway_stack: StackFactory) -> None:
    """An answer with PINs, kept for a key allowed them, is never served to a key that is
    not: the same document from a read-only key is executed, and its PINs are FORBIDDEN."""
    keys = {"pins": new_key(), "reader": new_key()}
    stored = (
        StoredKey("pins", bytes.fromhex(hash_key(keys["pins"])), frozenset({READ, PINS})),
        StoredKey("reader", bytes.fromhex(hash_key(keys["reader"])), frozenset({READ})),
    )
    security = SecuritySettings(
        auth="api-key", api_keys=stored, rate=1e6, burst=1e6, miss_rate=1e6, miss_burst=1e6
    )
    stack = await gateway_stack(security=security)
    with_pins = await stack.graphql(WALL, headers={"x-api-key": keys["pins"]})
    again = await stack.graphql(WALL, headers={"x-api-key": keys["pins"]})
    reader = await stack.graphql(WALL, headers={"x-api-key": keys["reader"]})
    assert with_pins["data"]["conference"]["participantPassword"] == "3201"
    assert again == with_pins
    assert reader["data"]["conference"] == {"name": "PM", "participantPassword": None}
    assert reader["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert responses_cached(stack) == 1  # only the pins key's repeat


async def test_response_cache_never_keeps_errors_or_stale_answers(
    gateway_stack: StackFactory,
) -> None:
    """An answer with an error, or served stale, is executed again next time."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0, pbx_breaker_threshold=100)
    await stack.graphql(WALL)
    stack.clock.advance(31)
    stack.pbx.fail_next(-1, "30003", "conference/query")
    stale = await stack.graphql(WALL)
    again = await stack.graphql(WALL)
    stack.pbx.clear_faults()
    assert stale["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE"
    assert again["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE"
    assert responses_cached(stack) == 0
