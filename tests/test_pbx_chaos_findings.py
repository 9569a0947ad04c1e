"""Regressions for what the chaos run found: abandoned calls, logout, repeated token errors."""

from __future__ import annotations

from tests.gateway_stack import StackFactory


async def test_stalled_pbx_never_sees_more_than_the_cap(gateway_stack: StackFactory) -> None:
    """Queries on a PBX that stalls past the timeout: the calls given up on keep their slots
    for the linger, so the PBX never has more than PBX_MAX_CONCURRENCY of ours at once."""
    stack = await gateway_stack(
        pbx_timeout=0.3, pbx_timeout_linger=2.5, pbx_breaker_threshold=100, request_deadline=10
    )
    stack.pbx.stall_next(-1, 2.0, endpoint="conference/query")
    for number in range(7000, 7004):
        result = await stack.graphql(f'{{ conference(number: "{number}") {{ name }} }}')
        assert result["errors"][0]["extensions"]["code"] == "PBX_UNAVAILABLE"
    stack.pbx.clear_faults()
    assert stack.calls() == 4
    assert stack.pbx.stats.max_in_flight <= 2


async def test_logout_goes_through_an_open_breaker(gateway_stack: StackFactory) -> None:
    """Shutting down with the breaker open still logs out, so the token does not linger."""
    stack = await gateway_stack(pbx_breaker_threshold=1)
    stack.pbx.garbage_next(1, "html", endpoint="conference/query")
    await stack.graphql('{ conference(number: "6400") { name } }')
    assert stack.gateway_runtime().client.breaker.state.value == "open"
    await stack.gateway.stop()
    assert stack.pbx.stats.logouts == 1


async def test_second_token_error_in_a_row_is_unavailable(gateway_stack: StackFactory) -> None:
    """A fresh token refused at once is PBX_UNAVAILABLE (served stale), not PBX_ERROR."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql('{ conference(number: "6400") { name } }')
    stack.clock.advance(31)
    stack.pbx.fail_next(2, "20006", "conference/query")
    result = await stack.graphql('{ conference(number: "6400") { name } }')
    assert result["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE"
    assert result["data"] == {"conference": {"name": "Sales"}}
    cold = await stack.graphql('{ conference(number: "6401") { name } }')
    assert "errors" not in cold  # the next call logs in afresh and works: no storm
    assert stack.calls("login") == 3  # start-up, the re-login after the first 20006, then this
