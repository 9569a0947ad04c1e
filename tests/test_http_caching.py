"""HTTP caching of GraphQL answers: Cache-Control, max-age from the data, ETag and 304.

The gateway runs with GATEWAY_CACHE_TTL=30 and no revalidate window; the fake clock moves
the data's age, so every max-age below is exact. PBX costs are the simulator's counters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography.fernet import Fernet

from gateway import http_caching
from gateway.secrets import Secret
from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import ROOM_ANSWER, ROOM_QUERY, api_key_security, codes, write_keys

TWO_ROOMS: Final = (
    '{ a: conference(number: "6400") { name } b: conference(number: "6401") { name } }'
)
EVERY_ROOM: Final = "{ conferences { number } }"


async def cached_stack(gateway_stack: StackFactory, **settings: Any) -> Stack:
    return await gateway_stack(cache_ttl=30, revalidate_window=0, **settings)


async def get(stack: Stack, query: str, **headers: str) -> httpx.Response:
    """A GET of ``query`` (application/json unless ``accept`` says otherwise)."""
    headers.setdefault("accept", "application/json")
    return await stack.client.get("/graphql", params={"query": query}, headers=headers)


# --- Cache-Control ---------------------------------------------------------------------------


async def test_get_without_client_auth_is_public_for_the_whole_ttl(
    gateway_stack: StackFactory,
) -> None:
    """GATEWAY_AUTH=none: everyone gets the same answer, so a CDN may share it."""
    stack = await cached_stack(gateway_stack)
    response = await get(stack, ROOM_QUERY)
    assert response.json() == ROOM_ANSWER
    assert response.headers["cache-control"] == "public, max-age=30"
    assert response.headers["vary"] == "Accept, Authorization, X-API-Key"


async def test_get_with_api_keys_is_private(gateway_stack: StackFactory, tmp_path: Path) -> None:
    """With client authentication what a caller sees depends on its key: private only."""
    stored, plain = write_keys(tmp_path, {"wallboard": [READ]})
    stack = await cached_stack(gateway_stack, security=api_key_security(stored))
    response = await get(stack, ROOM_QUERY, **{"x-api-key": plain["wallboard"]})
    assert response.json() == ROOM_ANSWER
    assert response.headers["cache-control"] == "private, max-age=30"


async def test_max_age_is_the_remaining_freshness_of_the_data(
    gateway_stack: StackFactory,
) -> None:
    """max-age counts down with the entry's age; after the TTL a new fetch starts it again."""
    stack = await cached_stack(gateway_stack)
    ages = []
    for step in (0, 10, 15, 4):
        stack.clock.advance(step)
        ages.append((await get(stack, ROOM_QUERY)).headers["cache-control"])
    assert ages == [f"public, max-age={n}" for n in (30, 20, 5, 1)]
    assert stack.calls() == 1
    stack.clock.advance(2)  # past the TTL: fetched again, fresh again
    assert (await get(stack, ROOM_QUERY)).headers["cache-control"] == "public, max-age=30"
    assert stack.calls() == 2


async def test_max_age_is_set_by_the_oldest_entry_that_answered(
    gateway_stack: StackFactory,
) -> None:
    """One room cached 12 s ago, one fetched now: the answer is fresh for 18 s more."""
    stack = await cached_stack(gateway_stack)
    await get(stack, ROOM_QUERY)
    stack.clock.advance(12)
    response = await get(stack, TWO_ROOMS)
    assert "errors" not in response.json()
    assert response.headers["cache-control"] == "public, max-age=18"
    assert stack.calls() == 2


async def test_max_age_of_every_room_follows_the_listing(gateway_stack: StackFactory) -> None:
    """The list of all rooms ages like a room does."""
    stack = await cached_stack(gateway_stack)
    await get(stack, EVERY_ROOM)
    stack.clock.advance(7)
    assert (await get(stack, EVERY_ROOM)).headers["cache-control"] == "public, max-age=23"


async def test_answer_without_store_data_gets_the_whole_ttl(gateway_stack: StackFactory) -> None:
    """{ __typename } reads nothing from the PBX: fresh for GATEWAY_CACHE_TTL."""
    stack = await cached_stack(gateway_stack)
    stack.clock.advance(5)
    assert (await get(stack, "{ __typename }")).headers["cache-control"] == "public, max-age=30"


async def test_post_is_never_stored(gateway_stack: StackFactory) -> None:
    """POST answers are no-store and carry no ETag."""
    stack = await cached_stack(gateway_stack)
    response = await stack.client.post("/graphql", json={"query": ROOM_QUERY})
    assert response.json() == ROOM_ANSWER
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers


async def test_answer_with_errors_is_never_stored(gateway_stack: StackFactory) -> None:
    """A partial answer (one bad room number) or a request error: no-store, no ETag."""
    stack = await cached_stack(gateway_stack)
    partial = await get(
        stack, '{ a: conference(number: "6400") { name } b: conference(number: "x") { name } }'
    )
    invalid = await get(stack, "{ noSuchField }", accept="application/graphql-response+json")
    assert codes(partial.json()) == ["BAD_USER_INPUT"]
    assert invalid.status_code == 400
    for response in (partial, invalid):
        assert response.headers["cache-control"] == "no-store"
        assert "etag" not in response.headers


async def test_stale_answer_is_never_stored(gateway_stack: StackFactory) -> None:
    """Data served stale because the PBX failed: no-store, though it has no errors."""
    stack = await cached_stack(gateway_stack, pbx_breaker_threshold=100)
    await get(stack, ROOM_QUERY)
    stack.clock.advance(31)
    stack.pbx.fail_next(-1, "30003", endpoint="conference/query")
    response = await get(stack, ROOM_QUERY)
    body = response.json()
    assert body["data"] == ROOM_ANSWER["data"]
    assert body["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE"
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers


# --- ETag and 304 ----------------------------------------------------------------------------


async def test_etag_revalidation_answers_304_without_a_pbx_call(
    gateway_stack: StackFactory,
) -> None:
    """If-None-Match with the answer's ETag: 304, no body, same validators, no PBX call."""
    stack = await cached_stack(gateway_stack)
    first = await get(stack, ROOM_QUERY)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    stack.clock.advance(10)
    again = await get(stack, ROOM_QUERY, **{"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=20"
    assert again.headers["vary"] == "Accept, Authorization, X-API-Key"
    assert stack.calls() == 1


async def test_if_none_match_uses_weak_comparison(gateway_stack: StackFactory) -> None:
    """The tag matches with or without W/, inside a list, or as *; another tag does not."""
    stack = await cached_stack(gateway_stack)
    etag = (await get(stack, ROOM_QUERY)).headers["etag"]
    strong = etag.removeprefix("W/")
    for header in (strong, f'"other", {etag}', "*"):
        assert (await get(stack, ROOM_QUERY, **{"if-none-match": header})).status_code == 304
    changed = await get(stack, ROOM_QUERY, **{"if-none-match": '"other"'})
    assert (changed.status_code, changed.json()) == (200, ROOM_ANSWER)


async def test_etag_follows_the_body(gateway_stack: StackFactory) -> None:
    """The same answer has the same ETag; another media type or document another one."""
    stack = await cached_stack(gateway_stack)
    json_tag = (await get(stack, ROOM_QUERY)).headers["etag"]
    assert (await get(stack, ROOM_QUERY)).headers["etag"] == json_tag
    preferred = await get(stack, ROOM_QUERY, accept="application/graphql-response+json")
    assert preferred.content == (await get(stack, ROOM_QUERY)).content
    assert preferred.headers["etag"] != json_tag
    other = await get(stack, TWO_ROOMS)
    assert other.headers["etag"] != json_tag
    renamed = '{ room: conference(number: "6400") { number name } }'
    assert json.loads((await get(stack, renamed)).content)["data"]["room"]["name"] == "Sales"
    assert (await get(stack, renamed)).headers["etag"] != json_tag


async def test_post_ignores_if_none_match(gateway_stack: StackFactory) -> None:
    """Conditional requests apply to GET only: a POST always runs and answers 200."""
    stack = await cached_stack(gateway_stack)
    etag = (await get(stack, ROOM_QUERY)).headers["etag"]
    response = await stack.client.post(
        "/graphql", json={"query": ROOM_QUERY}, headers={"if-none-match": etag}
    )
    assert (response.status_code, response.json()) == (200, ROOM_ANSWER)


# --- keyed ETags -----------------------------------------------------------------------------

PIN_QUERY: Final = '{ conference(number: "6401") { number name participantPassword } }'


async def test_etag_is_not_an_unkeyed_hash_of_the_body(gateway_stack: StackFactory) -> None:
    """A reader who knows every byte of an answer but its PIN cannot test guesses against
    the ETag: it is no plain SHA-256 of the body (what a brute force would compute)."""
    stack = await cached_stack(gateway_stack)
    answer = await get(stack, PIN_QUERY)
    media_type = answer.headers["content-type"]
    unkeyed = hashlib.sha256(media_type.encode() + b"\n" + answer.content).hexdigest()
    assert answer.headers["etag"] != f'W/"{unkeyed[:32]}"'
    assert answer.json()["data"]["conference"]["participantPassword"] is not None


async def test_etag_differs_between_deployments_for_the_same_body(
    gateway_stack: StackFactory,
) -> None:
    """Two gateways (each with its own random key) give the same body different ETags, and
    each still answers 304 to its own."""
    one, two = await cached_stack(gateway_stack), await cached_stack(gateway_stack)
    first, second = await get(one, PIN_QUERY), await get(two, PIN_QUERY)
    assert first.content == second.content
    assert first.headers["etag"] != second.headers["etag"]
    for stack, answer in ((one, first), (two, second)):
        etag = answer.headers["etag"]
        assert (await get(stack, PIN_QUERY, **{"if-none-match": etag})).status_code == 304
    assert (
        await get(one, PIN_QUERY, **{"if-none-match": second.headers["etag"]})
    ).status_code == 200


def test_etag_key_is_shared_by_a_fleet_and_random_otherwise() -> None:
    """Replicas with the same GATEWAY_REDIS_TOKEN_KEY derive the same ETag key (so a tag
    from one is honoured by another), not the fleet key itself; without one, each process
    draws its own."""
    fleet = Secret(Fernet.generate_key().decode())
    assert http_caching.etag_key(fleet) == http_caching.etag_key(Secret(fleet.reveal()))
    assert fleet.reveal().encode() not in http_caching.etag_key(fleet)
    assert http_caching.etag_key(fleet) != http_caching.etag_key(
        Secret(Fernet.generate_key().decode())
    )
    assert http_caching.etag_key(None) != http_caching.etag_key(None)
    tags = {http_caching.etag_for(b"{}", "application/json", key) for key in (b"a", b"b")}
    assert len(tags) == 2
