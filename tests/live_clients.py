"""Real subscription clients for live-data tests: a WebSocket client (``websockets``,
graphql-transport-ws) and a streaming HTTP client (httpx, the multipart subscription
protocol), plus the simulator's admin API for members joining and leaving.

Every text a client receives is kept (:class:`Frames`) so a test can check that no secret
(PBX token, channel id) ever left the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.gateway_stack import Stack

BOUND: Final = 10.0  # seconds: only a hang reaches it
PROTOCOL: Final = "graphql-transport-ws"
URQL_ACCEPT: Final = "text/event-stream, multipart/mixed"  # urql 6's fetchSubscriptions
APOLLO_ACCEPT: Final = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'
WATCH: Final = (
    "subscription Watch($numbers: [String]) { conferenceSessions(numbers: $numbers) "
    "{ number reason session { participants { id kind number status } } } }"
)


# --- the clients ----------------------------------------------------------------------------


class Frames:
    """Every text the clients received, to check that no secret ever left the gateway."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def check_clean(self, stack: Stack) -> None:
        """No PBX token, no channel id, no API key in anything a client received."""
        issued: dict[str, Any] = stack.pbx.tokens._tokens  # every token the PBX gave out
        secrets = set(issued)
        secrets |= {
            member.channelid for session in stack.pbx.live.sessions() for member in session.members
        }
        seen = "\n".join(self.texts)
        assert "channelid" not in seen
        for secret in secrets:
            assert secret not in seen


class Ws:
    """One graphql-transport-ws client connection."""

    def __init__(self, connection: ClientConnection, frames: Frames) -> None:
        self.connection, self.frames = connection, frames

    async def receive(self) -> dict[str, Any]:
        text = await asyncio.wait_for(self.connection.recv(), BOUND)
        assert isinstance(text, str)  # graphql-transport-ws is text frames
        self.frames.texts.append(text)
        message: dict[str, Any] = json.loads(text)
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        return await self.receive()

    async def subscribe(
        self, operation_id: str, numbers: list[str] | None = None, query: str = WATCH
    ) -> None:
        variables = {} if numbers is None else {"numbers": numbers}
        payload = {"query": query, "variables": variables}
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})

    async def update(self, operation_id: str) -> dict[str, Any]:
        """The next ``next`` message's update for ``operation_id`` (pings answered)."""
        while True:
            message = await self.receive()
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            assert message["type"] == "next", message
            assert message["id"] == operation_id
            assert "errors" not in message["payload"], message
            update: dict[str, Any] = message["payload"]["data"]["conferenceSessions"]
            return update

    async def closed_with(self) -> tuple[int, str]:
        """The close code and reason, once the server closes (messages before are read)."""
        try:
            while True:
                await self.receive()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason


async def connect_ws(
    stack: Stack,
    frames: Frames,
    *,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    path: str = "/graphql",
) -> Ws:
    url = stack.gateway.base_url.replace("http://", "ws://") + path
    connection = await connect(
        url,
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=BOUND,
        ping_interval=None,
    )
    return Ws(connection, frames)


class Multipart:
    """One multipart subscription response, read part by part."""

    MARK: Final = b"\r\n--graphql"

    def __init__(self, response: httpx.Response, frames: Frames) -> None:
        self.response, self.frames = response, frames
        self._chunks = response.aiter_bytes()
        self._buffer = b""
        self._started = False

    async def part(self) -> dict[str, Any] | None:
        """The next part's JSON (``{}``: a heartbeat), or None when the response ended."""
        while True:
            at = self._buffer.find(self.MARK)
            if at >= 0:
                part, self._buffer = self._buffer[:at], self._buffer[at + len(self.MARK) :]
                started, self._started = self._started, True
                if started and part.strip():  # what stands before the first boundary: none
                    text = part.split(b"\r\n\r\n", 1)[1].decode()
                    self.frames.texts.append(text)
                    found: dict[str, Any] = json.loads(text)
                    return found
                continue
            try:
                chunk = await asyncio.wait_for(anext(self._chunks), BOUND)
            except StopAsyncIteration:
                return None
            self._buffer += chunk

    async def update(self) -> dict[str, Any]:
        """The next update (heartbeats skipped)."""
        while True:
            part = await self.part()
            assert part is not None, "the stream ended"
            if part == {}:
                continue
            assert "errors" not in part["payload"], part
            update: dict[str, Any] = part["payload"]["data"]["conferenceSessions"]
            return update


@contextlib.asynccontextmanager
async def multipart_stream(
    stack: Stack,
    frames: Frames,
    numbers: list[str],
    *,
    accept: str = URQL_ACCEPT,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Multipart]:
    body = {"query": WATCH, "variables": {"numbers": numbers}}
    async with stack.client.stream(
        "POST", "/graphql", json=body, headers={"accept": accept, **(headers or {})}
    ) as response:
        yield Multipart(response, frames)


async def admin(stack: Stack, action: str, **body: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.sim.base_url) as admin:
        answer = await admin.post(f"/__simulator/live/{action}", json=body)
        assert answer.status_code == 200, answer.text


def members(update: dict[str, Any]) -> list[str]:
    session = update["session"]
    return [] if session is None else sorted(p["number"] for p in session["participants"])
