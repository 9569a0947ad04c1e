"""Failed authentications have a budget per address: key guessing is rate limited too."""

from __future__ import annotations

from gateway.security.api_keys import StoredKey, hash_key, new_key
from gateway.security.config import SecuritySettings
from gateway.security.identity import READ
from tests.gateway_stack import StackFactory


async def test_failed_authentications_are_rate_limited_per_address(
    gateway_stack: StackFactory,
) -> None:
    """After 20 wrong keys from one address, further attempts get 429 RATE_LIMITED, and a
    good key keeps working; the fake clock refills the budget."""
    key = new_key()
    stored = (StoredKey("wallboard", bytes.fromhex(hash_key(key)), frozenset({READ})),)
    security = SecuritySettings(auth="api-key", api_keys=stored, rate=1e6, burst=1e6)
    stack = await gateway_stack(security=security)
    query = {"query": '{ conference(number: "6400") { name } }'}
    statuses = [
        (
            await stack.client.post("/graphql", json=query, headers={"x-api-key": "guess"})
        ).status_code
        for _ in range(25)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20:] == [429] * 5
    refused = await stack.client.post("/graphql", json=query, headers={"x-api-key": "guess"})
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    good = await stack.client.post("/graphql", json=query, headers={"x-api-key": key})
    assert good.status_code == 200
    stack.clock.advance(30)
    again = await stack.client.post("/graphql", json=query, headers={"x-api-key": "guess"})
    assert again.status_code == 401


async def test_query_string_over_the_body_limit_is_refused(gateway_stack: StackFactory) -> None:
    """A GET whose query string is longer than GATEWAY_MAX_BODY_BYTES is 414, no PBX call."""
    stack = await gateway_stack(security=SecuritySettings(max_body_bytes=2048, rate=1e6, burst=1e6))
    before = dict(stack.pbx.stats.calls)
    response = await stack.client.get("/graphql", params={"query": "{ " + "x " * 2000 + "}"})
    assert response.status_code == 414
    assert response.json()["errors"][0]["extensions"]["code"] == "OPERATION_TOO_LARGE"
    assert dict(stack.pbx.stats.calls) == before
