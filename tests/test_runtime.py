"""The typed runtime seam: the lifespan hands the runtime on; without it, nothing pretends."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import generate_latest
from starlette.requests import Request

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.runtime import NotStarted, require_runtime, runtime_of
from tests.gateway_stack import StackFactory


def test_runtime_of_is_none_without_lifespan_state() -> None:
    """A request whose state holds no Runtime (no lifespan ran, or something else under
    the name) has none; require_runtime refuses it by name."""
    for state in (None, {}, {"runtime": "not a runtime"}):
        scope = {"type": "http", "headers": []} | ({"state": state} if state is not None else {})
        request = Request(scope)
        assert runtime_of(request) is None
        with pytest.raises(NotStarted):
            require_runtime(request)


async def test_runtime_readyz_without_a_lifespan_says_starting_up() -> None:
    """Served with no lifespan (httpx's in-process transport runs none), the app has no
    runtime: /readyz is 503 "starting up" and /metrics has no runtime series."""
    app = create_app(demo_settings("http://127.0.0.1:9"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert (ready.status_code, ready.json()) == (503, {"ready": False, "reasons": ["starting up"]})
    assert app.runtime is None
    assert "gateway_pbx_session_up" not in metrics.text


async def test_runtime_collector_lives_as_long_as_the_lifespan(
    gateway_stack: StackFactory,
) -> None:
    """The lifespan registers the runtime's collector with the objects it reads (the
    session's token shows at once) and unregisters it on shutdown."""
    stack = await gateway_stack()
    scraped = (await stack.client.get("/metrics")).text
    assert "gateway_pbx_session_up 1.0" in scraped
    await stack.gateway.stop()
    after = generate_latest(stack.gateway.app.metrics.registry).decode()
    assert "gateway_pbx_session_up" not in after
    assert "gateway_build_info" in after  # the app's own metrics stay
