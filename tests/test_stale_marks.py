"""Nothing older than the TTL is presented as fresh, stale-while-revalidate included.

The gateway runs with the shipped TTL and revalidate window (30 s each). Past the TTL, an
answer served from the expired entry while a refresh runs is marked ``REVALIDATING`` with
``revalidating: true``; once a refresh has failed, every answer from that entry carries the
failure's code until a refresh succeeds. The gateway's clock is fake; the background
refreshes are real calls to the simulator, awaited through the store's counters.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.store import ConferenceStore
from tests.gateway_stack import Stack, StackFactory
from tests.timing import eventually

ONE: Final = '{ conference(number: "6400") { number name } }'
EVERY: Final = "{ conferences { number name } }"


async def stack_with_defaults(gateway_stack: StackFactory) -> Stack:
    """TTL 30 s, revalidate window 30 s (the defaults); a breaker that does not open."""
    return await gateway_stack(cache_ttl=30, revalidate_window=30, pbx_breaker_threshold=100)


def store_of(stack: Stack) -> ConferenceStore:
    return stack.gateway_runtime().store


async def refreshed(stack: Stack, key: str = "6400") -> None:
    """Until a refresh of ``key`` (a number, or ``all``) succeeded: its answer is fresh."""
    store = store_of(stack)
    await eventually(lambda: store.current(key) is not None, what=f"a refresh of {key}")


async def failed(stack: Stack, count: int) -> None:
    """Until ``count`` fetches have failed in all."""
    store = store_of(stack)
    await eventually(lambda: store.stats.failed_fetches >= count, what=f"{count} failed fetches")


def stale_of(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    stale: dict[str, Any] = body["extensions"]["stale"]
    return stale


async def test_stale_answer_past_ttl_while_refreshing_is_marked_revalidating(
    gateway_stack: StackFactory,
) -> None:
    """31 s after a fetch, the answer comes at once from the expired entry, marked
    REVALIDATING (revalidating: true, its age); after the refresh it is fresh, unmarked."""
    stack = await stack_with_defaults(gateway_stack)
    fresh = await stack.graphql(ONE)
    assert "extensions" not in fresh
    stack.clock.advance(31)
    served = await stack.graphql(ONE)
    assert served["data"] == fresh["data"]
    stale = stale_of(served)
    assert stale["code"] == "REVALIDATING"
    assert "GATEWAY_CACHE_TTL" in stale["message"]
    (entry,) = stale["conferences"]
    assert (entry["number"], entry["ageSeconds"], entry["revalidating"]) == ("6400", 31, True)
    await refreshed(stack)
    again = await stack.graphql(ONE)
    assert again == fresh
    assert stack.calls() == 2


async def test_stale_after_a_failed_refresh_every_answer_is_marked_until_one_succeeds(
    gateway_stack: StackFactory,
) -> None:
    """Refreshes failing (errno 30003): every answer from the expired entry carries
    PBX_UNAVAILABLE, none revalidating; once a refresh succeeds, the answer is fresh."""
    stack = await stack_with_defaults(gateway_stack)
    fresh = await stack.graphql(ONE)
    stack.pbx.fail_next(-1, "30003", endpoint="conference/query")
    stack.clock.advance(31)
    assert stale_of(await stack.graphql(ONE))["code"] == "REVALIDATING"  # nothing failed yet
    await failed(stack, 1)
    for seen in range(2, 6):
        stack.clock.advance(1)  # still inside the window: served at once, refreshed again
        body = await stack.graphql(ONE)
        assert body["data"] == fresh["data"]
        stale = stale_of(body)
        assert stale["code"] == "PBX_UNAVAILABLE"
        assert "revalidating" not in stale["conferences"][0]
        await failed(stack, seen)
    stack.pbx.clear_faults()
    recovering = await stack.graphql(ONE)  # the last refresh failed: still marked
    assert stale_of(recovering)["code"] == "PBX_UNAVAILABLE"
    await refreshed(stack)
    assert store_of(stack).stats.failed_fetches == 5
    assert await stack.graphql(ONE) == fresh


async def test_stale_listing_past_ttl_is_marked_and_keeps_its_failure(
    gateway_stack: StackFactory,
) -> None:
    """The list of every room follows the same rule: REVALIDATING while refreshing, the
    failure's code after a failed refresh, unmarked once a refresh succeeds."""
    stack = await stack_with_defaults(gateway_stack)
    fresh = await stack.graphql(EVERY)
    stack.pbx.fail_next(-1, "30003", endpoint="conference/query")
    stack.clock.advance(31)
    first = stale_of(await stack.graphql(EVERY))
    assert first["code"] == "REVALIDATING"
    assert first["allConferences"]["revalidating"] is True
    await failed(stack, 1)
    after_failure = await stack.graphql(EVERY)
    assert after_failure["data"] == fresh["data"]
    assert stale_of(after_failure)["code"] == "PBX_UNAVAILABLE"
    assert "revalidating" not in stale_of(after_failure)["allConferences"]
    await failed(stack, 2)  # the refresh that answer started failed too
    stack.pbx.clear_faults()
    recovering = await stack.graphql(EVERY)  # starts a refresh that succeeds
    assert stale_of(recovering)["code"] == "PBX_UNAVAILABLE"
    await refreshed(stack, "all")
    assert await stack.graphql(EVERY) == fresh


async def test_stale_response_cache_never_hands_out_an_unmarked_expired_answer(
    gateway_stack: StackFactory,
) -> None:
    """An answer kept by the response cache (and sent over GET) is not reused once its data
    expired: the repeat is marked stale and sent no-store, not the kept clean copy."""
    stack = await stack_with_defaults(gateway_stack)
    params = {"query": ONE}
    first = await stack.client.get("/graphql", params=params)
    second = await stack.client.get("/graphql", params=params)
    assert first.json() == second.json()
    assert "max-age" in second.headers["cache-control"]
    stack.clock.advance(31)
    expired = await stack.client.get("/graphql", params=params)
    assert stale_of(expired.json())["code"] == "REVALIDATING"
    assert expired.headers["cache-control"] == "no-store"
    # The kept clean copy's tag no longer matches what the gateway would send: a full answer.
    revalidated = await stack.client.get(
        "/graphql", params=params, headers={"if-none-match": first.headers["etag"]}
    )
    assert revalidated.status_code == 200
    assert stale_of(revalidated.json())["code"] == "REVALIDATING"
