"""The response cache: identical reads answered without execution, never with old data."""

from __future__ import annotations

import random
import time
import tracemalloc
from typing import Any

import orjson

from gateway.schema.response_cache import CachedAnswer, ResponseCache, canonical_variables, key_for
from gateway.security.api_keys import StoredKey, hash_key, new_key
from gateway.security.config import SecuritySettings
from gateway.security.identity import PINS, READ
from gateway.simulator import SimulatorConfig, generate_conferences
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


# --- memory: a byte budget ---------------------------------------------------------------------

LISTING = "{ conferences { number name participantPassword } }"


def sample(stack: Stack, name: str) -> float:
    """One of the gateway's response-cache metrics, as scraped."""
    value = stack.gateway_runtime().metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_response_cache_variants_stay_within_the_byte_budget(
    gateway_stack: StackFactory,
) -> None:
    """Forty variants of a 1,000-room listing (a space apiece makes each a new document)
    against a budget of ten such answers: the bytes held never pass the budget, the
    excess is evicted, and the hot query asked between variants is answered from the
    cache every time (least recently used goes first)."""
    rooms = SimulatorConfig(conferences=generate_conferences(1000))
    stack = await gateway_stack(sim_config=rooms, response_cache_bytes=1_000_000)
    assert len((await stack.client.post("/graphql", json={"query": LISTING})).content) > 60_000
    await stack.graphql(WALL)
    for i in range(40):
        answer = await stack.graphql(LISTING + " " * (i + 1))
        assert len(answer["data"]["conferences"]) == 1000
        assert (await stack.graphql(WALL))["data"]["conference"]["name"]
        assert sample(stack, "gateway_response_cache_bytes") <= 1_000_000
    assert responses_cached(stack) == 40
    assert sample(stack, "gateway_response_cache_evictions_total") >= 25
    assert 2 <= sample(stack, "gateway_response_cache_entries") <= 16
    assert stack.calls() == 1  # the listing, which also answers the room


async def test_response_cache_drops_answers_once_their_data_expires(
    gateway_stack: StackFactory,
) -> None:
    """An answer leaves the cache when its data stops being fresh, even if never read
    again: nothing is held after GATEWAY_CACHE_TTL."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql(WALL)
    assert sample(stack, "gateway_response_cache_entries") == 1
    assert sample(stack, "gateway_response_cache_bytes") > 0
    stack.clock.advance(31)
    assert sample(stack, "gateway_response_cache_entries") == 0
    assert sample(stack, "gateway_response_cache_bytes") == 0


async def test_response_cache_does_not_keep_an_answer_over_its_share(
    gateway_stack: StackFactory,
) -> None:
    """An answer larger than an eighth of the budget is served but not kept: the next
    identical request executes again (from the store, no PBX call)."""
    rooms = SimulatorConfig(conferences=generate_conferences(1000))
    stack = await gateway_stack(sim_config=rooms, response_cache_bytes=200_000)
    first = await stack.graphql(LISTING)
    again = await stack.graphql(LISTING)
    assert again == first
    assert responses_cached(stack) == 0
    assert sample(stack, "gateway_response_cache_too_large_total") == 2
    assert sample(stack, "gateway_response_cache_bytes") == 0
    assert stack.calls() == 1


async def test_response_cache_of_zero_bytes_keeps_nothing(gateway_stack: StackFactory) -> None:
    """GATEWAY_RESPONSE_CACHE_BYTES=0 turns the response cache off; answers are unchanged."""
    stack = await gateway_stack(response_cache_bytes=0)
    assert await stack.graphql(WALL) == await stack.graphql(WALL)
    assert responses_cached(stack) == 0
    assert sample(stack, "gateway_response_cache_entries") == 0


def test_response_cache_key_is_one_text_per_variables_value() -> None:
    """Variables written in another key order or spacing are the same key; other values,
    an integer orjson cannot encode included, are other keys; None and {} are the same."""
    same = [{"b": [1, "é"], "a": {"z": 1, "y": 2.5}}, {"a": {"y": 2.5, "z": 1}, "b": [1, "é"]}]
    assert canonical_variables(same[0]) == canonical_variables(same[1])
    assert canonical_variables(None) == canonical_variables({}) == "{}"
    values: list[dict[str, Any]] = [
        {"n": 2**70}, {"n": 2**70 + 1}, {"n": 1}, {"n": "1"}, {"n": [1]}, {"n": None},
    ]  # fmt: skip
    texts = {canonical_variables(value) for value in values}
    assert len(texts) == len(values)
    assert key_for("q", "", None, frozenset()) == key_for("q", None, {}, frozenset())


def test_response_cache_memory_stays_within_the_bytes_it_counts() -> None:
    """Filled past its budget with random reads' answers encoded as the gateway encodes
    them (orjson, the compiled path's way), the cache's traced memory stays within its
    budget. orjson's bytes keep the whole buffer they grew in (4 KB for a 1 KB answer):
    kept as they came, a 32 MiB budget held about 119 MB."""
    budget = 4 * 1024 * 1024
    cache = ResponseCache(budget, ttl=300)
    document = (
        "query Rooms($numbers: [String!]) { conferences(numbers: $numbers) "
        "{ number name participantPassword moderatorPassword moderators prompt } }"
    )
    scopes = frozenset({READ, PINS})
    draw = random.Random(7)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        while cache.evictions < 1_000:
            numbers = [str(6400 + draw.randrange(10_000)) for _ in range(draw.randint(1, 10))]
            rooms = [
                {"number": n, "name": f"Room {n}", "participantPassword": "1234",
                 "moderatorPassword": "5678", "moderators": ["4001"], "prompt": "DEFAULT"}
                for n in numbers
            ]  # fmt: skip
            key = key_for(document, None, {"numbers": numbers}, scopes)
            body = orjson.dumps({"data": {"conferences": rooms}})
            cache.put(key, CachedAnswer(body, tuple((n, 1) for n in numbers), time.monotonic()))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.bytes_held <= budget
    assert held <= budget * 1.1, f"{held / budget:.2f} times the budget"
