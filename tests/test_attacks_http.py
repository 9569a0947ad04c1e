"""Hostile HTTP on loopback: giant and numerous headers, slow clients, too many connections,
forged ``X-Forwarded-For``. Bounded in size and time; each test asserts what the server still
does (``/healthz`` and a hot cached query answer, nothing reaches the PBX).

The real gateway is served by :class:`LoopbackServer`, the server ``pbx-gateway serve``
runs, with short timeouts so nothing waits long; one test runs the real command.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.security.config import SecuritySettings
from gateway.security.identity import READ
from gateway.serving import LoopbackServer
from gateway.settings import HttpLimits
from gateway.simulator import DEMO_PASSWORD, SimulatorServer, run_simulator_in_thread
from tests.processes import GatewayProcess
from tests.security_helpers import ROOM_QUERY

FAST = HttpLimits(header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=5)
"""Short deadlines, so the slow-client tests end in about a second."""


@dataclasses.dataclass
class Served:
    """A simulator and a gateway served by LoopbackServer, with a client for the gateway."""

    sim: SimulatorServer
    server: LoopbackServer
    client: httpx.AsyncClient

    def refused(self, code: str) -> float:
        """Connections refused with ``code``, as ``/metrics`` reports them."""
        registry = self.server.app.metrics.registry
        name = "gateway_http_connections_refused_total"
        value = registry.get_sample_value(name, {"code": code})
        assert value == self.server.guard.refused[code]
        return float(value)

    async def still_serving(self) -> None:
        """The probe and a hot cached query both answer, and the query costs no PBX call."""
        calls = self.sim.state.stats.calls.get("conference/query", 0)
        health = await self.client.get("/healthz")
        room = await self.client.post("/graphql", json={"query": ROOM_QUERY})
        assert health.status_code == 200
        assert room.json()["data"]["conference"]["number"] == "6400"
        assert self.sim.state.stats.calls.get("conference/query", 0) == calls


@contextlib.asynccontextmanager
async def served(
    limits: HttpLimits = FAST, security: SecuritySettings | None = None, **server: Any
) -> AsyncIterator[Served]:
    async with SimulatorServer() as sim:
        settings = demo_settings(sim.base_url)
        security = security or dataclasses.replace(
            settings.security, rate=1e6, burst=1e6, miss_rate=1e6, miss_burst=1e6
        )
        app = create_app(dataclasses.replace(settings, security=security))
        async with (
            LoopbackServer(app, limits=limits, **server) as gateway,
            httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client,
        ):
            await client.post("/graphql", json={"query": ROOM_QUERY})  # now hot
            yield Served(sim, gateway, client)


async def exchange(server: LoopbackServer, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection; what came back until the server closed it
    (b"" when it reset the connection while the data was still being sent)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def refusal(answer: bytes) -> tuple[int, str]:
    """Status and ``extensions.code`` of a refusal the guard wrote."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["errors"][0]["extensions"]["code"]


def request(headers: bytes = b"", path: bytes = b"/healthz") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: gateway\r\n" + headers + b"\r\n"


# --- header size and count -----------------------------------------------------------------


async def test_attack_giant_header_is_cut_off_and_the_server_keeps_serving() -> None:
    """A 4 MB header is refused (431, or the connection closed while it is still being
    sent) after one read past the limit; the probe and a cached query still answer."""
    async with served() as s:
        answer = await exchange(s.server, request(b"X-Big: " + b"a" * (4 << 20) + b"\r\n"))
        assert answer == b"" or refusal(answer) == (431, "HEADERS_TOO_LARGE")
        assert s.refused("HEADERS_TOO_LARGE") == 1
        await s.still_serving()


async def test_attack_header_over_the_byte_limit_answers_431_json() -> None:
    """Headers just over GATEWAY_MAX_HEADER_BYTES, sent at once: a coded JSON 431."""
    limits = dataclasses.replace(FAST, max_header_bytes=4096)
    async with served(limits) as s:
        answer = await exchange(s.server, request(b"X-Big: " + b"a" * 4096 + b"\r\n"))
        assert refusal(answer) == (431, "HEADERS_TOO_LARGE")
        assert b"content-type: application/json" in answer.lower()
        await s.still_serving()


async def test_attack_header_under_the_byte_limit_is_served() -> None:
    """A request whose headers fit the limit is served as usual (the limit is no guess)."""
    limits = dataclasses.replace(FAST, max_header_bytes=4096)
    async with served(limits) as s:
        answer = await exchange(
            s.server, request(b"X-Big: " + b"a" * 3800 + b"\r\nConnection: close\r\n")
        )
        assert answer.startswith(b"HTTP/1.1 200")
        assert s.refused("HEADERS_TOO_LARGE") == 0


async def test_attack_many_headers_answer_431() -> None:
    """500 small header fields (well under the byte limit) pass GATEWAY_MAX_HEADERS: 431."""
    async with served() as s:
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(500))
        answer = await exchange(s.server, request(fields))
        assert refusal(answer) == (431, "HEADERS_TOO_LARGE")
        assert b"501 header fields" in answer  # with Host
        await s.still_serving()


# --- slow clients --------------------------------------------------------------------------


async def test_attack_slow_headers_are_closed_after_the_header_timeout() -> None:
    """Twenty connections that never finish their headers are answered 408 and closed once
    GATEWAY_HEADER_TIMEOUT passes; the server answers others all along."""
    async with served() as s:
        halves = [await asyncio.open_connection(s.server.host, s.server.port) for _ in range(20)]
        for _, writer in halves:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        await s.still_serving()
        async with asyncio.timeout(10):
            answers = [await reader.read() for reader, _ in halves]
        for _, writer in halves:
            writer.close()
        assert {refusal(answer) for answer in answers} == {(408, "REQUEST_TIMEOUT")}
        assert s.refused("REQUEST_TIMEOUT") == 20
        await s.still_serving()


async def test_attack_silent_connection_is_closed_after_the_header_timeout() -> None:
    """A connection that sends nothing at all is closed after the header timeout too
    (without an answer: there was no request to answer)."""
    async with served() as s:
        answer = await exchange(s.server, b"")
        assert answer == b""
        assert s.refused("REQUEST_TIMEOUT") == 1


async def test_attack_slow_body_is_closed_after_the_body_timeout() -> None:
    """A POST that announces 100 bytes and sends 10 is answered 408 after
    GATEWAY_BODY_TIMEOUT; nothing reached the PBX."""
    async with served() as s:
        calls = s.sim.state.stats.calls.get("conference/query", 0)
        head = (
            b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        answer = await exchange(s.server, head + b'{"query": ')
        assert refusal(answer) == (408, "REQUEST_TIMEOUT")
        assert s.refused("REQUEST_TIMEOUT") == 1
        assert s.sim.state.stats.calls.get("conference/query", 0) == calls
        await s.still_serving()


async def test_attack_keep_alive_connection_serves_several_requests() -> None:
    """The deadlines are per request: a keep-alive connection used within them serves on,
    past the header timeout measured from its opening."""
    async with served() as s:
        reader, writer = await asyncio.open_connection(s.server.host, s.server.port)
        statuses = []
        for _ in range(3):
            writer.write(request())
            line = await reader.readline()
            statuses.append(line.split()[1])
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await reader.readexactly(len(b'{"status":"ok"}'))
            await asyncio.sleep(0.3)  # three of them: longer than one header timeout
        writer.close()
        assert statuses == [b"200"] * 3
        assert s.refused("REQUEST_TIMEOUT") == 0


# --- connection cap ------------------------------------------------------------------------


async def test_attack_connections_over_the_cap_answer_503_until_some_close() -> None:
    """With GATEWAY_MAX_CONNECTIONS=8 and eight idle connections open, a ninth is answered
    503 SERVER_BUSY at once; when they are gone, the probe answers again."""
    limits = dataclasses.replace(FAST, max_connections=8, header_timeout=30)
    async with served(limits) as s:
        await s.client.aclose()  # its keep-alive connection would count
        idle = [await asyncio.open_connection(s.server.host, s.server.port) for _ in range(8)]
        answer = await exchange(s.server, request())
        assert refusal(answer) == (503, "SERVER_BUSY")
        assert b"retry-after: 1" in answer.lower()
        for _, writer in idle:
            writer.close()
        async with httpx.AsyncClient(base_url=s.server.base_url) as probe:
            await asyncio.sleep(0.1)  # the server sees the closes
            assert (await probe.get("/healthz")).status_code == 200
        assert s.refused("SERVER_BUSY") == 1


async def test_attack_one_address_cannot_take_every_connection() -> None:
    """With GATEWAY_MAX_CONNECTIONS_PER_ADDRESS=4, a fifth connection from 127.0.0.1 is
    answered 503 while another address (127.0.0.2) is served; a trusted proxy's
    connections are not held to the per-address cap."""
    limits = dataclasses.replace(FAST, max_connections_per_address=4, header_timeout=30)
    async with served(limits) as s:
        await s.client.aclose()
        idle = [await asyncio.open_connection(s.server.host, s.server.port) for _ in range(4)]
        answer = await exchange(s.server, request())
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=s.server.base_url, transport=other) as probe:
            health = await probe.get("/healthz")
        for _, writer in idle:
            writer.close()
    assert refusal(answer) == (503, "SERVER_BUSY")
    assert b"this address holds its maximum of 4 connections" in answer
    assert health.status_code == 200
    async with served(limits, trusted_proxies=("127.0.0.0/8",)) as s:
        idle = [await asyncio.open_connection(s.server.host, s.server.port) for _ in range(4)]
        answer = await exchange(s.server, request(b"Connection: close\r\n"))
        for _, writer in idle:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


# --- X-Forwarded-For -----------------------------------------------------------------------


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__["fields"] for r in caplog.records if r.name == "gateway.request"]


async def test_attack_forged_forwarded_for_from_loopback_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no trusted proxy, X-Forwarded-For from 127.0.0.1 is ignored: the anonymous
    identity, its request budget and the logged client are the real peer's, so three
    requests each claiming another address share one budget of two."""
    caplog.set_level(logging.INFO, logger="gateway.request")
    security = SecuritySettings(
        auth="none", anonymous_scopes=frozenset({READ}), rate=0.001, burst=2
    )
    async with served(security=security) as s:  # the warm-up request took one token
        forged = [
            await s.client.post(
                "/graphql",
                json={"query": "{ __typename }"},
                headers={"x-forwarded-for": f"203.0.113.{i}"},
            )
            for i in range(2)
        ]
    assert [r.status_code for r in forged] == [200, 429]
    clients = {line.get("client") for line in request_lines(caplog) if "client" in line}
    assert clients == {"anonymous@127.0.0.1"}
    assert "203.0.113" not in caplog.text


async def test_attack_forged_forwarded_for_does_not_refill_the_failed_auth_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad API keys sent with a new X-Forwarded-For each time still draw on the real
    peer's failed-authentication budget (20, one spent by the keyless warm-up), and
    every refusal logs 127.0.0.1."""
    caplog.set_level(logging.INFO, logger="gateway.request")
    security = SecuritySettings(auth="api-key", rate=1e6, burst=1e6, miss_rate=1e6, miss_burst=1e6)
    async with served(security=security) as s:
        statuses = [
            (
                await s.client.post(
                    "/graphql",
                    json={"query": "{ __typename }"},
                    headers={"x-api-key": "wrong", "x-forwarded-for": f"198.51.100.{i}"},
                )
            ).status_code
            for i in range(21)
        ]
    assert statuses == [401] * 19 + [429, 429]
    addresses = {line["address"] for line in request_lines(caplog) if "address" in line}
    assert addresses == {"127.0.0.1"}


async def test_attack_forwarded_for_is_believed_from_a_configured_proxy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GATEWAY_TRUSTED_PROXIES is the one source of trust: with 127.0.0.1 listed, the
    address it forwards names the caller."""
    caplog.set_level(logging.INFO, logger="gateway.request")
    async with served(trusted_proxies=("127.0.0.1",)) as s:
        response = await s.client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"x-forwarded-for": "203.0.113.7"}
        )
    assert response.status_code == 200
    assert "anonymous@203.0.113.7" in {line.get("client") for line in request_lines(caplog)}


def test_attack_serve_command_ignores_forged_forwarded_for_and_times_out_slow_headers(
    tmp_path: Path,
) -> None:
    """The real ``pbx-gateway serve`` with its defaults and two short timeouts: a forged
    X-Forwarded-For from loopback names no one (the log says 127.0.0.1), and a half-sent
    request is answered 408 after GATEWAY_HEADER_TIMEOUT."""
    with run_simulator_in_thread() as sim:
        process = GatewayProcess(
            {
                "PBX_URL": sim.base_url,
                "PBX_USERNAME": "api",
                "PBX_PASSWORD": DEMO_PASSWORD,
                "GATEWAY_AUTH": "none",
                "GATEWAY_LOG_LEVEL": "INFO",
                "GATEWAY_HEADER_TIMEOUT": "0.5",
            },
            tmp_path / "serve.log",
        )
        try:
            process.wait_ready()
            response = httpx.post(
                f"{process.url}/graphql",
                json={"query": "{ __typename }"},
                headers={"x-forwarded-for": "203.0.113.9"},
            )
            answer = asyncio.run(_half_request(process.port))
        finally:
            assert process.stop() == 0
    assert response.status_code == 200
    assert refusal(answer) == (408, "REQUEST_TIMEOUT")
    lines = [
        json.loads(line)
        for line in (tmp_path / "serve.log").read_text().splitlines()
        if line.startswith("{")
    ]
    clients = {line.get("client") for line in lines if line.get("client")}
    assert clients == {"anonymous@127.0.0.1"}


async def _half_request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer
