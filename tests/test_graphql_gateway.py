"""The gateway end to end: GraphQL over loopback HTTP to the real simulator.

Every assertion about the PBX reads the simulator's own counters. The behaviour tests take
``pbx_profile`` and run against every firmware profile; where the variant changes what the
PBX is asked (how it answers an unknown number, a login's errno), the expectation says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.simulator import SimulatorConfig
from tests.gateway_stack import Stack, StackFactory, variant

FIVE_ALIASES_AND_A_LIST = """{
  a: conference(number: "6400") { number name }
  b: conference(number: "6401") { number name }
  c: conference(number: "6402") { number name }
  d: conference(number: "6403") { number name }
  e: conference(number: "6404") { number name }
  list: conferences(numbers: ["6405", "6400"]) { number }
}"""


async def test_gateway_batches_one_document_into_one_query(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """Five aliased `conference` fields and a `conferences` list make one conference/query."""
    stack = await gateway_stack()
    result = await stack.graphql(FIVE_ALIASES_AND_A_LIST)
    assert "errors" not in result
    assert [result["data"][k]["number"] for k in "abcde"] == [
        "6400",
        "6401",
        "6402",
        "6403",
        "6404",
    ]
    assert [c["number"] for c in result["data"]["list"]] == ["6405", "6400"]
    assert stack.calls() == 1
    assert sorted(stack.pbx.stats.query_numbers[0].split(",")) == [
        "6400",
        "6401",
        "6402",
        "6403",
        "6404",
        "6405",
    ]


async def test_gateway_repeats_within_ttl_make_no_call(gateway_stack: StackFactory) -> None:
    """The same document again within the TTL is answered from the cache."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql(FIVE_ALIASES_AND_A_LIST)
    stack.clock.advance(29)
    again = await stack.graphql(FIVE_ALIASES_AND_A_LIST)
    assert "errors" not in again
    assert stack.calls() == 1


async def test_gateway_after_ttl_makes_one_call(gateway_stack: StackFactory) -> None:
    """After the TTL the same document makes exactly one more call."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql(FIVE_ALIASES_AND_A_LIST)
    stack.clock.advance(31)
    again = await stack.graphql(FIVE_ALIASES_AND_A_LIST)
    assert "errors" not in again
    assert stack.calls() == 2


async def test_gateway_concurrent_cold_requests_make_one_call(gateway_stack: StackFactory) -> None:
    """100 concurrent identical requests on a cold cache make one login and one query."""
    stack = await gateway_stack(sim_config=SimulatorConfig(latency=0.05))
    results = await asyncio.gather(
        *(stack.graphql('{ conference(number: "6400") { name } }') for _ in range(100))
    )
    assert all(r == {"data": {"conference": {"name": "Sales"}}} for r in results)
    assert stack.calls() == 1
    assert stack.calls("login") == 1


async def test_gateway_unknown_numbers_are_cached_as_unknown(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """A number the PBX does not know is null, left out of lists, and not asked again; a
    room that exists is never called unknown, whatever shape the firmware's answer takes.

    Two calls on every profile: a batch answer without 9999 does not prove it unknown on
    every firmware, so the `all` listing settles it once; then both are cached."""
    stack = await gateway_stack()
    first = await stack.graphql(
        '{ conference(number: "9999") { name } conferences(numbers: ["9999", "6400"]) { number } }'
    )
    again = await stack.graphql('{ conference(number: "9999") { name } }')
    assert first["data"] == {"conference": None, "conferences": [{"number": "6400"}]}
    assert again["data"] == {"conference": None}
    batches = [sorted(numbers.split(",")) for numbers in stack.pbx.stats.query_numbers]
    assert batches == [["6400", "9999"], ["all"]]


async def test_gateway_all_conferences_fill_single_lookups(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """`conferences` without arguments makes one `all` call and serves later lookups."""
    stack = await gateway_stack()
    everything = await stack.graphql("{ conferences { number } }")
    single = await stack.graphql('{ conference(number: "6405") { number } }')
    assert len(everything["data"]["conferences"]) >= 12
    assert single["data"] == {"conference": {"number": "6405"}}
    assert stack.pbx.stats.query_numbers == ["all"]


@pytest.mark.parametrize(
    "document",
    [
        '{ conference(number: "all") { name } }',
        '{ conference(number: "6400,6401") { name } }',
        '{ conference(number: " 6400") { name } }',
        '{ conference(number: "") { name } }',
        '{ conferences(numbers: ["6400", "all"]) { name } }',
        "{ conferences(numbers: [" + ", ".join(f'"{n}"' for n in range(1, 102)) + "]) { name } }",
    ],
    ids=["all", "comma-list", "leading-space", "empty", "all-in-list", "101-numbers"],
)
async def test_gateway_injection_attempts_make_no_pbx_call(
    gateway_stack: StackFactory, document: str
) -> None:
    """Values that would widen the PBX query are BAD_USER_INPUT with no PBX call at all."""
    stack = await gateway_stack(login_at_start=False)
    result = await stack.graphql(document)
    assert [e["extensions"]["code"] for e in result["errors"]] == ["BAD_USER_INPUT"]
    assert dict(stack.pbx.stats.calls) == {}


async def test_gateway_hides_token_renewal_from_clients(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """Tokens expired on the PBX are replaced with one login and no error to the client."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql('{ conference(number: "6400") { name } }')
    stack.pbx.expire_tokens()
    stack.clock.advance(31)
    result = await stack.graphql('{ conference(number: "6400") { name } }')
    assert result == {"data": {"conference": {"name": "Sales"}}}
    assert stack.calls("login") == 2
    assert stack.pbx.stats.logins_failed == 0


FAULTS: dict[str, tuple[str, Callable[[Stack], None]]] = {
    "errno-30003": ("PBX_UNAVAILABLE", lambda s: s.pbx.fail_next(-1, "30003", "conference/query")),
    "errno-10003": ("PBX_ERROR", lambda s: s.pbx.fail_next(-1, "10003", "conference/query")),
    "html": ("PBX_UNAVAILABLE", lambda s: s.pbx.garbage_next(-1, "html")),
    "truncated-json": ("PBX_UNAVAILABLE", lambda s: s.pbx.garbage_next(-1, "truncated")),
    "empty-body": ("PBX_UNAVAILABLE", lambda s: s.pbx.garbage_next(-1, "empty")),
    "http-500": ("PBX_UNAVAILABLE", lambda s: s.pbx.garbage_next(-1, "500")),
    "dropped-connection": ("PBX_UNAVAILABLE", lambda s: s.pbx.drop_next(-1)),
    "stall": ("PBX_UNAVAILABLE", lambda s: s.pbx.stall_next(-1, 60)),
    "down": ("PBX_UNAVAILABLE", lambda s: s.sim.go_down()),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_gateway_pbx_failures_arrive_coded(gateway_stack: StackFactory, fault: str) -> None:
    """Each PBX failure mode reaches the client as its documented extensions.code."""
    code, arm = FAULTS[fault]
    stack = await gateway_stack(pbx_timeout=0.5)
    arm(stack)
    result = await stack.graphql('{ conference(number: "6400") { name } }')
    stack.pbx.clear_faults()
    (error,) = result["errors"]
    assert error["extensions"]["code"] == code
    assert result["data"] == {"conference": None}
    assert "Traceback" not in error["message"]


async def test_gateway_pbx_error_carries_errno(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """An errno the gateway cannot work around is PBX_ERROR with the errno, after one fallback."""
    stack = await gateway_stack()
    stack.pbx.fail_next(-1, "10003", "conference/query")
    result = await stack.graphql('{ conference(number: "6400") { name } }')
    assert result["errors"][0]["extensions"] == {"code": "PBX_ERROR", "errno": "10003"}
    assert stack.calls() == 2  # the batch, then the one fallback to "all"


async def test_gateway_wrong_credentials_arrive_as_auth_failed(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """Credentials the PBX rejects are PBX_AUTH_FAILED, with one failed login for many asks."""
    stack = await gateway_stack(sim_config=SimulatorConfig(password="not-the-demo-one"))
    results = [await stack.graphql('{ conference(number: "6400") { name } }') for _ in range(10)]
    codes = {r["errors"][0]["extensions"]["code"] for r in results}
    assert codes == {"PBX_AUTH_FAILED"}
    assert "PBX_USERNAME" in results[0]["errors"][0]["message"]
    errno = variant(pbx_profile).login_failure_errno  # 20003, or 30003 on K2 v1's reading
    assert {r["errors"][0]["extensions"]["errno"] for r in results} == {errno}
    assert stack.pbx.stats.logins_failed == 1
    assert stack.pbx.stats.logins_locked == 0


async def test_gateway_locked_out_address_arrives_as_locked_out(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """An address the PBX has locked out is PBX_LOCKED_OUT, and the gateway stops trying."""
    stack = await gateway_stack(
        sim_config=SimulatorConfig(lockout_threshold=1), login_at_start=False
    )
    await stack.sim_login_with_wrong_password()
    results = [await stack.graphql('{ conference(number: "6400") { name } }') for _ in range(5)]
    assert {r["errors"][0]["extensions"]["code"] for r in results} == {"PBX_LOCKED_OUT"}
    assert "locked out" in results[0]["errors"][0]["message"]
    assert stack.calls("login") == 2  # the test's own failed login, then the gateway's one
