"""Rate limits per identity: the request bucket (HTTP 429) and the PBX-miss budget.

Buckets read the gateway's fake clock, so refills are driven by ``stack.clock.advance``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.security.identity import READ
from gateway.security.rate_limit import RateLimiter
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import (
    ROOM_ANSWER,
    ROOM_QUERY,
    Keys,
    api_key_security,
    codes,
    refusal,
    write_keys,
)
from tests.timing import FakeClock

ONE = '{ conference(number: "%s") { number name } }'


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return write_keys(tmp_path, {"wallboard": [READ], "kiosk": [READ]})


async def ask(stack: Stack, key: str, query: str = ROOM_QUERY) -> httpx.Response:
    return await stack.client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})


# --- requests per identity -----------------------------------------------------------------


async def request_limited(gateway_stack: StackFactory, keys: Keys) -> Stack:
    """1 request/s with a burst of 3 per identity; misses unlimited."""
    stored, _ = keys
    return await gateway_stack(security=api_key_security(stored, rate=1, burst=3))


async def test_rate_requests_past_the_burst_are_429_with_retry_after(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """Three requests pass; the fourth is 429 RATE_LIMITED with Retry-After and no PBX call."""
    stack = await request_limited(gateway_stack, keys)
    key = keys[1]["wallboard"]
    for _ in range(3):
        assert (await ask(stack, key)).json() == ROOM_ANSWER
    calls = stack.calls()
    fourth = await ask(stack, key)
    message = refusal(fourth, 429, "RATE_LIMITED")
    assert fourth.headers["retry-after"] == "1"
    assert "wallboard" in message
    assert key not in fourth.text
    assert stack.calls() == calls


async def test_rate_identities_have_separate_buckets(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """One key spending its bucket leaves another key's untouched."""
    stack = await request_limited(gateway_stack, keys)
    _, plain = keys
    for _ in range(3):
        await ask(stack, plain["wallboard"])
    assert (await ask(stack, plain["wallboard"])).status_code == 429
    for _ in range(3):
        assert (await ask(stack, plain["kiosk"])).json() == ROOM_ANSWER
    assert (await ask(stack, plain["kiosk"])).status_code == 429


async def test_rate_bucket_refills_with_the_clock(gateway_stack: StackFactory, keys: Keys) -> None:
    """After a 429, one second buys exactly one more request; a full refill buys the burst."""
    stack = await request_limited(gateway_stack, keys)
    key = keys[1]["wallboard"]
    for _ in range(3):
        await ask(stack, key)
    assert (await ask(stack, key)).status_code == 429
    stack.clock.advance(1)
    assert (await ask(stack, key)).status_code == 200
    assert (await ask(stack, key)).status_code == 429
    stack.clock.advance(60)  # refills to the burst, never beyond it
    statuses = [(await ask(stack, key)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_rate_retry_after_tells_the_real_wait(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """With a slow refill (one request per 10 s) Retry-After says 10, rounded up."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored, rate=0.1, burst=1))
    await ask(stack, plain["wallboard"])
    stack.clock.advance(0.5)
    response = await ask(stack, plain["wallboard"])
    assert response.status_code == 429
    assert response.headers["retry-after"] == "10"


async def test_rate_unauthenticated_requests_do_not_drain_a_key(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """Requests with a wrong key are refused as 401 and never spend a real key's bucket."""
    stack = await request_limited(gateway_stack, keys)
    for _ in range(10):
        assert (await ask(stack, "pbxgw_wrong")).status_code == 401
    for _ in range(3):
        assert (await ask(stack, keys[1]["wallboard"])).status_code == 200


# --- PBX misses per identity ---------------------------------------------------------------


async def miss_limited(gateway_stack: StackFactory, keys: Keys, **settings: Any) -> Stack:
    """Requests unlimited; two PBX fetches per identity, refilling very slowly."""
    stored, _ = keys
    security = api_key_security(stored, miss_rate=0.001, miss_burst=2)
    return await gateway_stack(security=security, **settings)


async def test_rate_miss_budget_stops_a_scan_of_unknown_numbers(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """A scan of unknown numbers gets two PBX fetches; every later miss is RATE_LIMITED with
    retryAfter and makes no call, while cached rooms still answer."""
    stack = await miss_limited(gateway_stack, keys)
    key = keys[1]["wallboard"]
    assert (await ask(stack, key, ONE % "6400")).json() == ROOM_ANSWER
    assert (await ask(stack, key, ONE % "90001")).json() == {"data": {"conference": None}}
    assert stack.calls() == 2
    for number in range(90002, 90022):
        response = await ask(stack, key, ONE % number)
        body = response.json()
        assert response.status_code == 200
        assert body["data"] == {"conference": None}
        assert codes(body) == ["RATE_LIMITED"]
        (error,) = body["errors"]
        assert error["path"] == ["conference"]
        assert error["extensions"]["retryAfter"] >= 1
        assert response.headers["retry-after"] == str(error["extensions"]["retryAfter"])
    assert stack.calls() == 2
    assert str(90003) not in ",".join(stack.pbx.stats.query_numbers)
    assert (await ask(stack, key, ONE % "6400")).json() == ROOM_ANSWER
    assert (await ask(stack, key, ONE % "90001")).json() == {"data": {"conference": None}}
    assert stack.calls() == 2


async def test_rate_miss_budget_is_per_identity(gateway_stack: StackFactory, keys: Keys) -> None:
    """One key's spent miss budget does not stop another key's fetches."""
    stack = await miss_limited(gateway_stack, keys)
    _, plain = keys
    for number in ("90001", "90002"):
        await ask(stack, plain["wallboard"], ONE % number)
    spent = (await ask(stack, plain["wallboard"], ONE % "90003")).json()
    assert codes(spent) == ["RATE_LIMITED"]
    fresh = (await ask(stack, plain["kiosk"], ONE % "90003")).json()
    assert fresh == {"data": {"conference": None}}
    assert stack.calls() == 3


async def test_rate_miss_budget_counts_fetches_not_numbers(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """Many unknown numbers in one request are one PBX fetch, so one unit of the budget. (The
    `all` listing that proves them unknown is one more call, made once per TTL for every
    caller together, so it is not charged to this one; it caches every room as well.)"""
    stack = await miss_limited(gateway_stack, keys)
    key = keys[1]["wallboard"]
    numbers = ", ".join(f'"{n}"' for n in range(91000, 91050))
    body = (await ask(stack, key, "{ conferences(numbers: [" + numbers + "]) { number } }")).json()
    assert body == {"data": {"conferences": []}}
    assert stack.pbx.stats.query_numbers[1:] == ["all"]
    assert (await ask(stack, key, ONE % "6400")).json() == ROOM_ANSWER  # from the listing
    assert (await ask(stack, key, ONE % "92000")).json() == {"data": {"conference": None}}
    assert codes((await ask(stack, key, ONE % "92001")).json()) == ["RATE_LIMITED"]
    assert stack.calls() == 3


async def test_rate_limited_miss_on_a_known_room_is_served_stale(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """An expired room whose refetch is refused by the budget is served stale, marked
    RATE_LIMITED, with no PBX call."""
    stack = await miss_limited(gateway_stack, keys, cache_ttl=30, revalidate_window=0)
    key = keys[1]["wallboard"]
    await ask(stack, key, ONE % "6400")
    await ask(stack, key, ONE % "90001")
    stack.clock.advance(31)  # 6400 expired; the budget refilled by 0.031 fetches only
    response = await ask(stack, key, ONE % "6400")
    body = response.json()
    assert body["data"] == ROOM_ANSWER["data"]
    assert "errors" not in body
    stale = body["extensions"]["stale"]
    assert stale["code"] == "RATE_LIMITED"
    assert [c["number"] for c in stale["conferences"]] == ["6400"]
    assert stack.calls() == 2


async def test_rate_limited_listing_without_a_known_copy_is_refused(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """`conferences` without arguments after the budget is spent: RATE_LIMITED, no call."""
    stack = await miss_limited(gateway_stack, keys)
    key = keys[1]["wallboard"]
    for number in ("90001", "90002"):
        await ask(stack, key, ONE % number)
    body = (await ask(stack, key, "{ conferences { number } }")).json()
    assert codes(body) == ["RATE_LIMITED"]
    assert body["data"] is None
    assert stack.pbx.stats.query_numbers == ["90001", "90002"]


async def test_rate_limited_message_and_retry_after_agree_when_rounded(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """A wait of 0.2 s reads "retry in 1 s" with retryAfter 1, never "retry in 0 s"."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored, miss_rate=1, miss_burst=1))
    key = plain["wallboard"]
    await ask(stack, key, ONE % "90001")
    stack.clock.advance(0.8)  # 0.8 of a fetch back: 0.2 s short of the next one
    response = await ask(stack, key, ONE % "90002")
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 1}
    assert "retry in 1 s" in error["message"]
    assert response.headers["retry-after"] == "1"


def test_rate_allows_peeks_without_taking() -> None:
    """``allows`` says what ``take`` would answer now and takes nothing (the hot path
    peeks before it runs a compiled plan, then takes once the plan answered)."""
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2.0, clock=clock)
    for _ in range(5):
        assert limiter.allows("a")  # a new bucket: the burst, and still untouched
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0
    assert not limiter.allows("a") and limiter.rejected == 0
    assert limiter.take("a") > 0 and limiter.rejected == 1
    clock.advance(1.0)
    assert limiter.allows("a") and limiter.allows("a")
    assert limiter.take("a") == 0.0
    assert not limiter.allows("a")
    assert not RateLimiter(rate=1.0, burst=0.5, clock=clock).allows("b")
