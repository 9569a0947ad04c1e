"""The heartbeat's ipaddr: our address on the PBX connection, or the routed one."""

from __future__ import annotations

import httpx
import pytest

from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.local_address import LAST_RESORT, connection_address, routed_address
from gateway.simulator import DEMO_PASSWORD, SimulatorServer, password_digest


async def test_local_address_read_from_the_pbx_connection() -> None:
    """After a call over loopback, the client knows the local address of that connection."""
    async with (
        SimulatorServer() as sim,
        build_http_client(base_url=sim.base_url, timeout=5.0, verify=True) as http,
    ):
        client = PbxClient(http)
        assert client.local_address is None
        await client.call("login", {"username": "api", "password": password_digest(DEMO_PASSWORD)})
        assert client.local_address == "127.0.0.1"
        assert client.heartbeat_address() == "127.0.0.1"


def test_local_address_none_without_a_socket() -> None:
    """A response with no network stream (an in-process transport) gives no address."""
    assert connection_address(httpx.Response(200)) is None


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8088", "127.0.0.1"),
        ("https://[::1]:8088", "::1"),
        ("http:///x", None),
        ("https://pbx.invalid:8088", None),
    ],
)
def test_local_address_routed_fallback(base_url: str, expected: str | None) -> None:
    """Before any call, the OS's route to the PBX's IP gives the address; a host name is
    never resolved (a hanging resolver would hold a thread), so it gets the last resort."""
    assert routed_address(base_url) == (expected or LAST_RESORT)


async def test_local_address_heartbeat_never_empty_without_a_socket() -> None:
    """With an in-process transport and an unresolvable host, the heartbeat still gets an
    address (the last resort), never an empty ipaddr."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "Success"}))
    async with build_http_client(
        base_url="http://pbx.invalid", timeout=5.0, verify=True, transport=transport
    ) as http:
        client = PbxClient(http)
        await client.call("heartbeat", {}, token="t")
        assert client.local_address is None
        assert client.heartbeat_address() == LAST_RESORT
