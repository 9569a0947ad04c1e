"""A change in flight when the gateway stops: answered, and audited, whatever the grace.

The real gateway on :class:`LoopbackServer` (what ``serve`` runs) against a simulator made
slow after start-up; the server is stopped as SIGTERM stops it while the PBX still holds
the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.runtime import Runtime
from gateway.security.identity import ALL_SCOPES
from gateway.serving import LoopbackServer
from gateway.simulator import SimulatorServer
from tests.mutation_helpers import UPDATE_NO_PINS, scopes
from tests.timing import eventually


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__["fields"] for r in caplog.records if r.name == "gateway.audit"]


async def change_while_stopping(grace: int, latency: float) -> tuple[httpx.Response, str | None]:
    """Send a rename, stop the server (grace ``grace``) once the PBX has it, and return
    the client's answer and the room's name on the PBX after the PBX finished."""
    async with SimulatorServer() as sim:
        settings = dataclasses.replace(
            demo_settings(sim.base_url), security=scopes(ALL_SCOPES), shutdown_grace=grace
        )
        server = LoopbackServer(create_app(settings), graceful_shutdown=grace)
        await server.start()
        runtime: Runtime = server.app.runtime
        await runtime.session.started()
        sim.state.configure(latency=latency)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            variables = {"input": {"number": "6401", "name": "Renamed at shutdown"}}
            sent = asyncio.create_task(
                client.post("/graphql", json={"query": UPDATE_NO_PINS, "variables": variables})
            )
            await eventually(lambda: runtime.client.limiter.in_flight > 0)  # the PBX has it
            await server.stop()
            response = await sent
        await eventually(lambda: name_on_pbx(sim) == "Renamed at shutdown")  # the PBX finished
        return response, name_on_pbx(sim)


def name_on_pbx(sim: SimulatorServer) -> str | None:
    room = sim.state.book.get("6401")
    return None if room is None else room["name"]


async def test_mutation_cut_off_by_shutdown_is_answered_and_audited_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A grace shorter than the PBX's answer: the change lands on the PBX, and its client
    still gets coded JSON (PBX_UNAVAILABLE, 'may or may not have been applied'), not a
    plain-text 500; exactly one audit line says unknown."""
    caplog.set_level(logging.INFO, logger="gateway.audit")
    response, name_on_pbx = await change_while_stopping(grace=1, latency=3.0)
    assert name_on_pbx == "Renamed at shutdown"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["PBX_UNAVAILABLE"]
    assert "may or may not have been applied" in body["errors"][0]["message"]
    assert [(a["outcome"], a["number"], a["error_code"]) for a in audit_records(caplog)] == [
        ("unknown", "6401", "PBX_UNAVAILABLE")
    ]


async def test_mutation_in_flight_at_shutdown_completes_within_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a grace longer than the PBX's answer (the default covers the deadline and a PBX
    call), the change in flight completes and is answered as usual; one audit line."""
    caplog.set_level(logging.INFO, logger="gateway.audit")
    response, _ = await change_while_stopping(grace=10, latency=0.5)
    body = response.json()
    assert "errors" not in body, body
    assert body["data"]["updateConference"]["changedFields"] == ["name"]
    assert [a["outcome"] for a in audit_records(caplog)] == ["applied"]
