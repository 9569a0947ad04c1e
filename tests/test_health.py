"""``/healthz`` and ``/readyz``: cheap, honest, and never a PBX call."""

from __future__ import annotations

from gateway import __version__
from gateway.simulator import SimulatorConfig
from tests.gateway_stack import StackFactory


async def test_healthz_answers_ok(gateway_stack: StackFactory) -> None:
    """Liveness is 200 while the process serves."""
    stack = await gateway_stack()
    response = await stack.client.get("/healthz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ok", "version": __version__},
    )


async def test_readyz_ready_after_start_up_login(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """Logged in at start-up, the gateway is ready before its first query."""
    stack = await gateway_stack()
    response = await stack.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["pbxSession"] == "logged in"


async def test_readyz_probes_never_call_the_pbx(gateway_stack: StackFactory) -> None:
    """A hundred probes cost the PBX nothing."""
    stack = await gateway_stack()
    before = dict(stack.pbx.stats.calls)
    for _ in range(50):
        await stack.client.get("/readyz")
        await stack.client.get("/healthz")
    assert dict(stack.pbx.stats.calls) == before


async def test_readyz_not_ready_with_rejected_credentials_says_why(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """Wrong credentials: 503 and a reason naming PBX_AUTH_FAILED."""
    stack = await gateway_stack(sim_config=SimulatorConfig(password="someone-changed-it"))
    response = await stack.client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["ready"] is False
    assert any(reason.startswith("PBX_AUTH_FAILED") for reason in body["reasons"])


async def test_readyz_ready_with_stale_data_when_pbx_down(gateway_stack: StackFactory) -> None:
    """Holding servable data keeps the gateway ready while the PBX is down, with a warning."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0, pbx_breaker_threshold=1)
    await stack.graphql('{ conference(number: "6400") { name } }')
    stack.pbx.expire_tokens()
    stack.sim.go_down()
    stack.clock.advance(31)
    result = await stack.graphql('{ conference(number: "6400") { name } }')
    assert result["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE"
    response = await stack.client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["checks"]["circuit"] == "open"
    assert body["warnings"]
