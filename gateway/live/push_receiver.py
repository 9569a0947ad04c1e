"""HTTP push: the PBX POSTs each event to the gateway, on a listener of its own.

pbx-api.md "Events" (``api-reports.html``): with the HTTP report method the PBX sends each
event as one POST of JSON to the address given at login: the caller's own address, the
login's ``port``, and its ``url`` (relative, ``urltag`` 0). With ``GATEWAY_LIVE_PUSH_PORT``
set, the gateway's logins carry that port and a path with an unguessable segment
(:class:`PushEndpoint`), and :class:`PushReceiver` (a small ASGI app, served on
``GATEWAY_LIVE_PUSH_BIND``:port by the app's bounded server) takes the events:

- only ``POST`` (405 otherwise) on exactly that path (404 otherwise, compared in constant
  time); a body over ``MAX_PUSH_BYTES`` is refused (413) before it is read whole;
- a body that is not JSON: 400 (the PBX never sends one, so it is not retried for nothing);
  any JSON answers 200 (the PBX repeats an event until it gets 200), a ``ConferenceStatus``
  reaching the sink, anything else skipped and counted as on the TCP channel.

:class:`PushSource` is the :class:`~gateway.live.contracts.LiveSource`: it serves the
receiver and resyncs once it listens (as the TCP channel does after each connect). The
PBX pushes only while the login's token lives (the session's heartbeat keeps it); a change
while none did is found by the supervisor's reconciliation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.live.contracts import LiveSink
from gateway.live.event_source import EventCounts, Listing, resync_into
from gateway.pbx.report_channel import ChannelCounts, RoomStatus, read_status
from gateway.pbx.sessions_query import LiveSession, MemberNotes

logger = logging.getLogger(__name__)

PATH_PREFIX: Final = "live-push"
MAX_PUSH_BYTES: Final = 1 << 20
"""The largest event body taken (1 MiB, as a TCP report line)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Serve = Callable[[AsgiApp, str, int], AbstractAsyncContextManager[object]]
"""Serves an ASGI app on host:port while entered (the app's bounded HTTP server)."""


@dataclass(frozen=True)
class PushEndpoint:
    """Where the PBX is told to push: the port, the bind address, the secret path segment."""

    port: int
    bind: str
    secret: str = field(repr=False)

    @classmethod
    def create(cls, port: int, bind: str) -> PushEndpoint:
        """A new endpoint with a random path segment (this process's; never logged)."""
        return cls(port, bind, secrets.token_hex(16))

    @property
    def path(self) -> str:
        """The path the receiver answers on."""
        return f"/{PATH_PREFIX}/{self.secret}"

    def login_fields(self) -> dict[str, str]:
        """What every API login adds so the PBX pushes here (``url`` relative: urltag 0)."""
        return {"port": str(self.port), "url": self.path.lstrip("/")}


class PushReceiver:
    """The ASGI app that takes pushed events; ``on_status`` gets each room status."""

    def __init__(
        self,
        endpoint: PushEndpoint,
        on_status: Callable[[RoomStatus], None],
        counts: ChannelCounts,
        notes: MemberNotes | None = None,
    ) -> None:
        self._path = endpoint.path.encode()
        self._on_status, self._counts, self._notes = on_status, counts, notes
        self.refused = 0
        """Requests answered other than 200 (wrong method, path, size or body)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("raw_path") or str(scope.get("path", "")).encode()
        if not hmac.compare_digest(path, self._path):
            await self._answer(send, 404)
            return
        if scope.get("method") != "POST":
            await self._answer(send, 405)
            return
        body = await _bounded_body(scope, receive)
        if body is None:
            await self._answer(send, 413)
            return
        try:
            event = json.loads(body)
        except ValueError:
            self._counts.unreadable_lines += 1
            await self._answer(send, 400)
            return
        status = read_status(event, self._counts, self._notes)
        if status is not None:
            self._on_status(status)
        await _respond(send, 200)

    async def _answer(self, send: Send, code: int) -> None:
        self.refused += 1
        await _respond(send, code)


async def _bounded_body(scope: Scope, receive: Receive) -> bytes | None:
    """The request body, or None when it is (or says it is) over ``MAX_PUSH_BYTES``."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                if int(value) > MAX_PUSH_BYTES:
                    return None
            except ValueError:
                return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client went away: nothing to read
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_PUSH_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, code: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [(b"content-length", b"0"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class PushSource:
    """Serves the push receiver into ``sink`` until cancelled; see the module's docstring."""

    def __init__(
        self,
        endpoint: PushEndpoint,
        serve: Serve,
        resync: Callable[[], Awaitable[Listing]],
        *,
        notes: MemberNotes | None = None,
    ) -> None:
        self._endpoint, self._serve, self._resync, self._notes = endpoint, serve, resync, notes
        self.counts = EventCounts()
        self.known: dict[str, LiveSession | None] = {}
        self.connected = False
        self.receiver: PushReceiver | None = None

    async def run(self, sink: LiveSink) -> None:
        """Listen until cancelled; returns at once when the port cannot be listened on."""

        def on_status(status: RoomStatus) -> None:
            self.known[status.number] = status.session
            sink.room_changed(status.number, status.session)

        endpoint = self._endpoint
        receiver = PushReceiver(endpoint, on_status, self.counts.channel, self._notes)
        self.receiver = receiver
        try:
            server = self._serve(receiver, endpoint.bind, endpoint.port)
            await server.__aenter__()
        except OSError as exc:
            logger.error(
                "live: cannot listen for pushed events on %s:%d (%s)",
                endpoint.bind,
                endpoint.port,
                getattr(exc, "message", exc.strerror),
            )
            return
        try:
            self.connected = True
            self.counts.connects += 1
            logger.info("live: listening for pushed events on port %d", endpoint.port)
            await resync_into(sink, self._resync, self.known, self.counts)
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.connected = False
            await server.__aexit__(None, None, None)
