"""Resilience end to end: the real gateway against the simulator's fault switches.

Assertions are on counts and outcomes (the simulator's counters, error codes, stale marks),
never on wall-clock time. The gateway's clock is a fake one the tests move.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.gateway_stack import Stack, StackFactory

TEN = [str(n) for n in range(6400, 6410)]
TEN_QUERY = "{ conferences(numbers: [" + ", ".join(f'"{n}"' for n in TEN) + "]) { number name } }"
ONE_QUERY = '{ conference(number: "%s") { number name } }'


async def burst(stack: Stack, documents: list[str], *, width: int = 50) -> list[dict[str, Any]]:
    """Send ``documents`` with at most ``width`` in flight; return the bodies in order."""
    gate = asyncio.Semaphore(width)

    async def one(document: str) -> dict[str, Any]:
        async with gate:
            return await stack.graphql(document)

    return await asyncio.gather(*(one(d) for d in documents))


async def warm(stack: Stack) -> None:
    """Fill the cache with the ten rooms, then let them expire past the revalidate window."""
    assert "errors" not in await stack.graphql(TEN_QUERY)
    stack.clock.advance(31)  # the tests use cache_ttl=30 and revalidate_window=0


def codes(result: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in result.get("errors", [])]


async def test_pbx_down_burst_is_served_stale_then_recovers(gateway_stack: StackFactory) -> None:
    """PBX down for 500 requests on warm keys: zero errors, all marked stale; back up: fresh."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await warm(stack)
    stack.sim.go_down()
    results = await burst(stack, [ONE_QUERY % TEN[i % 10] for i in range(500)])
    assert [r for r in results if "errors" in r] == []
    assert all(r["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE" for r in results)
    assert all(r["data"]["conference"]["number"] in TEN for r in results)
    # The breaker opened after a few failures, so the burst cost only a handful of attempts.
    assert stack.gateway_runtime().client.breaker.opened_count >= 1
    stack.sim.come_up()
    stack.clock.advance(31)  # past the breaker's cool-down: the next call is its trial
    after = await stack.graphql(ONE_QUERY % "6400")
    assert after == {"data": {"conference": {"number": "6400", "name": "Sales"}}}


async def test_pbx_stalling_under_load_costs_one_call_and_never_hangs(
    gateway_stack: StackFactory,
) -> None:
    """200 concurrent cold requests for 10 rooms on a stalling PBX: at most 5 query calls.

    Bound: PBX_BREAKER_THRESHOLD (5). Every request needs the same ten rooms, so each
    request arriving while a batch is in flight joins it (single-flight); a timeout is not
    retried (only lost connections are); a request arriving after a batch failed starts
    the next one, and after five consecutive failures the breaker answers the rest at once.
    """
    stack = await gateway_stack(pbx_timeout=0.5)
    assert "errors" not in await stack.graphql(ONE_QUERY % "6499")  # logs in; 6499 unknown
    stack.pbx.stall_next(-1, 60, endpoint="conference/query")
    results = await burst(stack, [TEN_QUERY] * 200, width=200)
    stack.pbx.clear_faults()
    assert {tuple(codes(r)) for r in results} == {("PBX_UNAVAILABLE",)}
    assert 2 <= stack.calls() <= 1 + 5  # the warm-up, then at most the breaker's threshold
    assert "did not answer" in results[0]["errors"][0]["message"]


@pytest.mark.parametrize("fault", ["html", "truncated", "drop", "errno-30003"])
async def test_pbx_garbage_is_served_stale_and_recovers(
    gateway_stack: StackFactory, fault: str
) -> None:
    """Garbage, truncated JSON, dropped connections, 30003: stale with a code, then fresh."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0, pbx_breaker_threshold=100)
    await warm(stack)
    if fault == "drop":
        stack.pbx.drop_next(-1, endpoint="conference/query")
    elif fault == "errno-30003":
        stack.pbx.fail_next(-1, "30003", endpoint="conference/query")
    else:
        stack.pbx.garbage_next(-1, "html" if fault == "html" else "truncated")
    stale = await burst(stack, [ONE_QUERY % n for n in TEN] * 3)
    assert [r for r in stale if "errors" in r] == []
    assert {r["extensions"]["stale"]["code"] for r in stale} == {"PBX_UNAVAILABLE"}
    stack.pbx.clear_faults()
    fresh = await stack.graphql(TEN_QUERY)
    assert "extensions" not in fresh and "errors" not in fresh
    assert len(fresh["data"]["conferences"]) == 10


async def test_tokens_expired_mid_burst_cost_one_login(gateway_stack: StackFactory) -> None:
    """Every token expired mid-burst: zero client-visible errors, one new login."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql(ONE_QUERY % "6400")
    first_half = burst(stack, [ONE_QUERY % n for n in TEN] * 5)
    stack.pbx.expire_tokens()
    stack.clock.advance(31)
    second_half = burst(stack, [TEN_QUERY] * 50)
    results = [*(await first_half), *(await second_half)]
    assert [r for r in results if "errors" in r] == []
    assert stack.calls("login") == 2
    assert stack.pbx.stats.logins_failed == 0


# The login variants only (each run is four 100-query bursts): the default, the firmware
# that rejects with 30003, and every pessimistic reading at once.
@pytest.mark.parametrize("pbx_profile", ["s-series-v2", "login-30003", "field-worst"])
async def test_credentials_changed_mid_run_never_lock_out(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """Credentials changed on the PBX: at most one failed login per cool-down (two in all
    for unchanged settings), stale data with PBX_AUTH_FAILED, never a lockout."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0, pbx_login_cooldown=600)
    await warm(stack)
    stack.pbx.set_credentials("api", "changed-by-the-admin")
    for failed_so_far in (1, 2, 2, 2):
        results = await burst(stack, [ONE_QUERY % n for n in TEN] * 10)
        assert [r for r in results if "errors" in r] == []
        assert {r["extensions"]["stale"]["code"] for r in results} == {"PBX_AUTH_FAILED"}
        assert "credentials" in results[0]["extensions"]["stale"]["message"]
        assert stack.pbx.stats.logins_failed == failed_so_far
        stack.clock.advance(601)  # one cool-down later
        stack.pbx.advance_time(601)
    assert stack.pbx.stats.logins_locked == 0
    assert stack.pbx.lockout.locked_addresses(stack.pbx.now()) == []


async def test_expiring_hot_key_is_revalidated_once(gateway_stack: StackFactory) -> None:
    """Just past the TTL, a burst is served at once while one background refresh runs;
    what the expired entries answer is marked REVALIDATING, never presented as fresh."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=30)
    fresh = await stack.graphql(TEN_QUERY)
    stack.clock.advance(31)
    results = await burst(stack, [TEN_QUERY] * 100, width=100)
    assert all(r["data"] == fresh["data"] and "errors" not in r for r in results)
    marks = [r.get("extensions", {}).get("stale", {}).get("code") for r in results]
    # Those answered before the refresh landed are marked; any after it are fresh.
    assert "REVALIDATING" in marks
    assert set(marks) <= {"REVALIDATING", None}
    for _ in range(100):  # the refresh runs in the background: wait for its count
        if stack.calls() == 2 and stack.pbx.stats.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert stack.calls() == 2


async def test_shutdown_finishes_in_flight_requests_and_logs_out(
    gateway_stack: StackFactory,
) -> None:
    """Stopping (as on SIGTERM) lets an in-flight request finish, then logs out."""
    stack = await gateway_stack()
    stack.pbx.configure(latency=0.3)
    request = asyncio.create_task(stack.graphql(ONE_QUERY % "6400"))
    for _ in range(200):
        if stack.pbx.stats.in_flight:
            break
        await asyncio.sleep(0.005)
    await stack.gateway.stop()
    assert (await request)["data"]["conference"]["name"] == "Sales"
    assert stack.pbx.stats.logouts == 1
