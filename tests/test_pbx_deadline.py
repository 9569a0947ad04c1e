"""A total deadline per PBX call, slots that count from the PBX's side, and readiness that
shows slots stuck on calls the PBX never finished; the real simulator over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.errors import PbxTimeoutError
from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.limiter import PbxLimiter
from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorServer,
    password_digest,
)
from tests.gateway_stack import StackFactory
from tests.timing import eventually

LOGIN = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}


@contextlib.asynccontextmanager
async def client_for(
    sim: SimulatorServer, *, pbx_timeout: float, max_concurrency: int = 2
) -> AsyncIterator[PbxClient]:
    """A PbxClient on the simulator, built as the app builds it (PBX_TIMEOUT = pbx_timeout)."""
    async with build_http_client(base_url=sim.base_url, timeout=pbx_timeout, verify=True) as http:
        limiter = PbxLimiter(max_concurrency=max_concurrency, max_waiting=100)
        yield PbxClient(http, limiter=limiter)


async def test_dripping_answer_is_cut_off_at_the_deadline() -> None:
    """A PBX sending one byte every 0.2 s never trips a per-chunk timeout; the call's total
    deadline (PBX_TIMEOUT, 0.5 s here) ends it, and the PBX sees the connection close."""
    async with SimulatorServer() as sim:
        sim.state.drip_next(1, interval=0.2, endpoint="login")  # ~16 s for the whole answer
        async with client_for(sim, pbx_timeout=0.5) as client:
            assert client.deadline == 0.5
            with pytest.raises(PbxTimeoutError) as info:
                await client.call("login", LOGIN)
            assert "within 0.5 s" in info.value.message
            assert info.value.reached_pbx
            assert client.limiter.stuck == 0  # no linger configured: the slot is free again
            await eventually(lambda: sim.state.stats.in_flight == 0)  # we hung up
            assert (await client.call("login", LOGIN))["status"] == "Success"


async def test_abandoned_calls_keep_their_slots_until_the_pbx_answers() -> None:
    """Callers cancelled while their calls are at the PBX: the calls run to their end there,
    holding their slots, so the PBX never sees more than the cap (2) of ours at once."""
    async with SimulatorServer(SimulatorConfig(latency=0.4)) as sim:
        async with client_for(sim, pbx_timeout=5) as client:
            token = (await client.call("login", LOGIN))["token"]

            async def query(number: str) -> object:
                return await client.call("conference/query", {"number": number}, token=token)

            given_up = [asyncio.create_task(query(str(6400 + i))) for i in range(6)]
            await eventually(lambda: sim.state.stats.in_flight == 2)
            for task in given_up:
                task.cancel()  # two at the PBX, four still waiting for a slot
            await asyncio.gather(*given_up, return_exceptions=True)
            after = await asyncio.gather(*(query(str(6406 + i)) for i in range(4)))
            assert all(answer["status"] == "Success" for answer in after)  # type: ignore[index]
            await eventually(lambda: sim.state.stats.in_flight == 0)
        stats = sim.state.stats
    assert stats.max_in_flight <= 2
    assert stats.calls["conference/query"] == 6  # the two abandoned ones, then four more


async def test_gateway_giving_up_on_requests_keeps_the_pbx_cap(
    gateway_stack: StackFactory,
) -> None:
    """Requests whose deadline passes, and clients that hang up, while the PBX is slow: the
    PBX still never has more than PBX_MAX_CONCURRENCY (2) of the gateway's calls at once."""
    stack = await gateway_stack(
        sim_config=SimulatorConfig(latency=0.3), request_deadline=0.1, pbx_breaker_threshold=100
    )

    async def impatient(number: int) -> None:
        query = {"query": f'{{ conference(number: "{number}") {{ name }} }}'}
        with contextlib.suppress(httpx.TimeoutException):
            await stack.client.post("/graphql", json=query, timeout=0.05 if number % 2 else 30)

    await asyncio.gather(*(impatient(7000 + i) for i in range(12)))

    def numbers_asked() -> set[str]:
        return {n for raw in stack.pbx.stats.query_numbers for n in raw.split(",")}

    # Every fetch goes on after its callers gave up: all twelve numbers reach the PBX (misses
    # queued behind busy calls share a batch; unknown ones are checked against "all"), two
    # calls at a time.
    wanted = {str(7000 + i) for i in range(12)}
    await eventually(
        lambda: wanted <= numbers_asked() and stack.pbx.stats.in_flight == 0, seconds=30
    )
    assert stack.pbx.stats.max_in_flight <= 2


async def test_readyz_reports_slots_stuck_on_a_dripping_pbx(gateway_stack: StackFactory) -> None:
    """Both slots held by calls cut off at the deadline (lingering: the PBX may still work on
    them): /readyz says not ready and why; once the linger passes, ready again."""
    stack = await gateway_stack(
        pbx_timeout=0.5, pbx_timeout_linger=4, pbx_breaker_threshold=100, request_deadline=30
    )
    assert (await stack.client.get("/readyz")).status_code == 200  # logged in at start
    stack.pbx.drip_next(-1, interval=0.2, endpoint="conference/query")
    for number in ("6400", "6401"):
        result = await stack.graphql(f'{{ conference(number: "{number}") {{ name }} }}')
        assert result["errors"][0]["extensions"]["code"] == "PBX_UNAVAILABLE"
        assert "within 0.5 s" in result["errors"][0]["message"]
    ready = await stack.client.get("/readyz")
    stack.pbx.clear_faults()
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["pbxSlots"] == {"limit": 2, "inUse": 2, "stuck": 2}
    assert any("slots are held" in reason for reason in body["reasons"])
    await eventually(lambda: stack.pbx.stats.in_flight == 0)  # the gateway hung up on both
    limiter = stack.gateway_runtime().client.limiter
    await eventually(lambda: limiter.stuck == 0)
    assert (await stack.client.get("/readyz")).status_code == 200
