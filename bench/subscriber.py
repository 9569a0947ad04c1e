"""One ``graphql-transport-ws`` subscriber: the fan-out workload's client, one per socket.

The protocol (graphql-ws's ``PROTOCOL.md``): ``connection_init`` and wait for
``connection_ack``; ``subscribe`` with an id; then ``next`` messages until ``complete`` or
``error``; the server may ``ping`` at any time and gets a ``pong``. The WebSocket itself
comes from the ``websockets`` library (its asyncio client), so the framing, the masking and
the closing handshake are a well-kept library's, and this module only speaks the protocol.

Each subscriber opens its own connection, as a wallboard or a console would; it may bind a
chosen loopback source address (``127.0.0.x``), so many subscribers stand for clients on
many hosts. Every ``next`` is handed to ``on_update`` with the moment it was read, before
anything else is done with it. How the connection ended (a close code and reason, an
``error`` message's code) is kept, so a ``SLOW_CONSUMER`` close can be counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"
SUBSCRIPTION = (
    "subscription Fanout($numbers: [String]) { conferenceSessions(numbers: $numbers) "
    "{ number reason session { participants { number } } } }"
)
"""What each subscriber asks: its room's updates, with the participants' numbers (enough
to tell which change an update carries)."""

OnUpdate = Callable[["Subscriber", dict[str, Any], float], None]
"""Called with the subscriber, the ``conferenceSessions`` object and ``time.monotonic()``
at the moment the message was read."""


class ProtocolError(RuntimeError):
    """The server answered something the protocol does not allow at that point."""


@dataclass
class Ending:
    """How a subscription ended, when it did."""

    close_code: int | None = None
    close_reason: str = ""
    error_codes: list[str] = field(default_factory=list)
    """``extensions.code`` of each GraphQL error the server sent (``error`` or ``next``)."""
    completed: bool = False


class Subscriber:
    """One WebSocket connection carrying one ``conferenceSessions`` subscription."""

    def __init__(
        self,
        index: int,
        url: str,
        room: str,
        on_update: OnUpdate,
        *,
        source_address: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.index, self.url, self.room = index, url, room
        self._on_update, self._source, self._headers = on_update, source_address, headers
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.ending = Ending()
        self.updates = 0

    async def open(self, *, within: float = 30.0) -> None:
        """Connect, initialise, subscribe; the reader then runs until the connection ends."""
        extra: dict[str, Any] = {}
        if self._source is not None:
            extra["local_addr"] = (self._source, 0)  # loop.create_connection's argument
        ws = await connect(
            self.url,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]  # a Subprotocol is a str
            additional_headers=self._headers,
            compression=None,  # what a small client does; and no CPU spent on deflate
            ping_interval=None,  # the server's keep-alives are the protocol's ping
            open_timeout=within,
            max_size=1 << 20,
            **extra,
        )
        self._ws = ws
        if ws.subprotocol != PROTOCOL:
            await ws.close()
            raise ProtocolError(f"the server chose subprotocol {ws.subprotocol!r}")
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        async with asyncio.timeout(within):
            while True:
                message = orjson.loads(await ws.recv())
                if message.get("type") == "connection_ack":
                    break
                if message.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                raise ProtocolError(f"expected connection_ack, got {message!r}")
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": SUBSCRIPTION, "variables": {"numbers": [self.room]}},
        }
        await ws.send(orjson.dumps(subscribe).decode())
        self._reader = asyncio.create_task(self._read(ws), name=f"subscriber-{self.index}")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.monotonic()
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    payload = message.get("payload") or {}
                    for error in payload.get("errors") or ():
                        self.ending.error_codes.append(_code(error))
                    data = (payload.get("data") or {}).get("conferenceSessions")
                    if data is not None:
                        self.updates += 1
                        self._on_update(self, data, now)
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind == "error":
                    self.ending.error_codes.extend(_code(e) for e in message.get("payload") or ())
                elif kind == "complete":
                    self.ending.completed = True
        except ConnectionClosed:
            pass
        finally:
            if ws.close_code is not None:
                self.ending.close_code = ws.close_code
                self.ending.close_reason = ws.close_reason or ""

    @property
    def open_now(self) -> bool:
        """Whether the connection is still up."""
        return self._reader is not None and not self._reader.done()

    async def close(self) -> None:
        """Say ``complete``, close the socket, wait for the reader."""
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed, OSError):
            await ws.send('{"id":"1","type":"complete"}')
        with contextlib.suppress(ConnectionClosed, OSError):
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 10)


def _code(error: Any) -> str:
    if isinstance(error, dict):
        code = (error.get("extensions") or {}).get("code")
        if code:
            return str(code)
        return str(error.get("message", "?"))[:80]
    return str(error)[:80]
