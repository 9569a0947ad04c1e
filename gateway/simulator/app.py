"""``create_simulator_app``: the Starlette app of one simulated PBX, built from its config.

Nothing is built at import time. The live ``SimulatorState`` is ``app.state.simulator``. Admin
routes come first; every other path, with any method, goes to the API handler, so the device's
envelope answers everything (no Starlette 404/405 pages). The simulator speaks plain HTTP: the
real PBX serves HTTPS on 8088 with a self-signed certificate, which the gateway's TLS options
cover; a test of those needs a TLS proxy in front of this app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from gateway.simulator.admin import admin_routes
from gateway.simulator.api import handle_api_call
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.envelope import API_HANDOFF_FAILED, failed
from gateway.simulator.routing import any_method_route
from gateway.simulator.state import SimulatorState


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Starlette still re-raises after this answer, so the server log (or the test) shows the bug;
    # the client only ever sees the PBX's envelope, never a stack trace.
    return failed(API_HANDOFF_FAILED)


def create_simulator_app(config: SimulatorConfig | None = None) -> Starlette:
    """A new simulated PBX; its live state is ``app.state.simulator``."""
    state = SimulatorState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.shutting_down = False
        yield
        state.release_stalls()

    app = Starlette(
        routes=[*admin_routes(), any_method_route("/{path:path}", handle_api_call)],
        exception_handlers={Exception: _unexpected_error},
        lifespan=lifespan,
    )
    app.state.simulator = state
    return app
