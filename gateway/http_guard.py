"""What one connection may cost the server: header size and count, read deadlines, a cap.

uvicorn's fast parser (httptools) bounds neither the size nor the number of a request's
headers, and its cost grows faster than the header (one 150 MB header stalled every
request for 12 s); and uvicorn has no deadline for reading a request, so a client that
sends half of one holds a connection, and a file descriptor, for ever (20,000 of them
took ``/healthz`` down). :class:`GuardedHttpToolsProtocol` is uvicorn's own httptools
protocol with those limits added where the bytes arrive, before any ASGI code runs:

- the headers (request line included) may hold ``max_header_bytes`` and ``max_headers``
  fields: beyond, 431 ``HEADERS_TOO_LARGE``. A header still arriving is cut off as soon
  as it passes the limit, so the parser never holds more than the limit plus one read;
- the headers must have arrived ``header_timeout`` seconds after the connection opened
  or the previous answer ended, and the body ``body_timeout`` seconds after the headers:
  otherwise 408 ``REQUEST_TIMEOUT`` (when no answer has started);
- at most ``max_connections`` connections are open, and at most
  ``max_connections_per_address`` from one address (trusted proxies aside, which carry
  everyone's): one more is answered 503 ``SERVER_BUSY`` at once. The second cap keeps one
  flooding address from taking every connection, ``/healthz``'s included.

Each refusal is JSON with a code (the shape of every other refusal), one log line on
``gateway.request``, a count in :class:`ConnectionGuard`, and the connection closes.
Idle keep-alive connections are closed by uvicorn after ``keep_alive_timeout``.

A WebSocket upgrade (only ``/graphql`` accepts one) passes the same header limits first;
the upgraded connection keeps counting in the totals and the per-address cap until it is
lost (:mod:`gateway.ws_guard` takes the release over from here).

The class reaches into uvicorn's protocol (``parser``, ``cycle``, ``pipeline`` and the
parser callbacks), so the attack tests in ``tests/test_attacks_http.py`` pin this down
for the uvicorn in use.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.error_code import ErrorCode
from gateway.settings import HttpLimits
from gateway.ws_guard import GuardedWebSocketProtocol

logger = logging.getLogger("gateway.request")

_REASONS: Final = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Phase(enum.Enum):
    IDLE = "idle"  # kept alive between requests: uvicorn's keep-alive timeout applies
    HEADERS = "headers"
    BODY = "body"
    APP = "app"  # the request is in; only the app's answer is awaited


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that must be refused."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ConnectionGuard:
    """The limits one server applies, and what it refused (for tests and metrics)."""

    def __init__(self, limits: HttpLimits, trusted_proxies: Sequence[str] = ()) -> None:
        self.limits = limits
        self.per_address: Counter[str] = Counter()
        """Open connections by peer address (trusted proxies not counted)."""
        self._trusted = _Addresses(trusted_proxies)
        self.refused: Counter[str] = Counter()
        """Refusals by code: HEADERS_TOO_LARGE, REQUEST_TIMEOUT, SERVER_BUSY."""
        self.open = 0
        """Connections open now."""
        self.websockets = 0
        """Of those, upgraded to a WebSocket (subscriptions)."""

    def counts(self, address: str) -> bool:
        """Whether ``address`` is held to the per-address cap (a proxy is not)."""
        return address not in self._trusted

    def protocol(self) -> type[GuardedHttpToolsProtocol]:
        """uvicorn's ``http=`` argument: the guarded protocol bound to this guard."""
        return type("BoundGuardedProtocol", (GuardedHttpToolsProtocol,), {"guard": self})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring."""

    guard: ClassVar[ConnectionGuard]

    _phase = _Phase.HEADERS
    _header_bytes = 0
    _timer: asyncio.TimerHandle | None = None
    _refused = False
    _address: str | None = None
    """The peer address this connection counts against, if any."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.open += 1
        limits = self.guard.limits
        address = self.client[0] if self.client else ""
        guard = self.guard
        if len(self.connections) > limits.max_connections:
            message = f"the server holds its maximum of {limits.max_connections} connections"
            self._refuse(_Refused(503, ErrorCode.SERVER_BUSY, f"{message}; retry shortly"))
            return
        if guard.counts(address):
            if guard.per_address[address] >= limits.max_connections_per_address:
                most = limits.max_connections_per_address
                message = f"this address holds its maximum of {most} connections"
                self._refuse(_Refused(503, ErrorCode.SERVER_BUSY, f"{message}; reuse one"))
                return
            guard.per_address[address] += 1
            self._address = address
        self._arm(limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._disarm()
        super().connection_lost(exc)

    def _release(self) -> None:
        """Uncount this connection (once: the HTTP protocol or, after an upgrade, the
        WebSocket protocol calls it when the connection is lost)."""
        self.guard.open -= 1
        if self._address is not None:
            self.guard.per_address[self._address] -= 1
            if not self.guard.per_address[self._address]:
                del self.guard.per_address[self._address]
            self._address = None

    def handle_websocket_upgrade(self) -> None:
        # The headers passed their limits (on_headers_complete); no deadline applies to the
        # WebSocket (its keep-alive does), and the transport goes to the new protocol, which
        # releases this connection's counts when it is lost: this protocol never hears of it.
        self._disarm()
        self._phase = _Phase.APP
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, GuardedWebSocketProtocol):
            self.guard.websockets += 1
            protocol.on_lost = self._release_websocket

    def _release_websocket(self) -> None:
        self.guard.websockets -= 1
        self._release()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered and closing: the rest of the request does not matter
            return
        if self._phase is _Phase.IDLE:  # the next request has begun: its headers are due
            self._phase, self._header_bytes = _Phase.HEADERS, 0
            self._arm(self.guard.limits.header_timeout)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(exc.__context__)
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase is _Phase.HEADERS:
            # Headers still arriving: count every byte, so a giant header is cut off after
            # one read past the limit instead of being parsed to its end.
            self._header_bytes += len(data)
            if self._header_bytes > self.guard.limits.max_header_bytes:
                self._refuse(self._too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase is not _Phase.HEADERS:  # pipelined behind one in the app
            self._arm(self.guard.limits.header_timeout)
        self._phase, self._header_bytes = _Phase.HEADERS, 0

    def on_headers_complete(self) -> None:
        limits = self.guard.limits
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > limits.max_header_bytes:
            raise self._too_large()
        if len(self.headers) > limits.max_headers:
            message = (
                f"the request has {len(self.headers)} header fields; at most {limits.max_headers}"
            )
            raise _Refused(431, ErrorCode.HEADERS_TOO_LARGE, message)
        self._phase = _Phase.BODY
        self._arm(limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _Phase.APP
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase is _Phase.APP and not self.pipeline:
            # Idle until the next request's first byte (uvicorn's keep-alive timeout
            # closes it if none comes); its header deadline starts then.
            self._phase = _Phase.IDLE

    def _too_large(self) -> _Refused:
        limit = self.guard.limits.max_header_bytes
        return _Refused(
            431, ErrorCode.HEADERS_TOO_LARGE, f"the request headers exceed {limit} bytes"
        )

    def _timed_out(self) -> None:
        self._timer = None
        limits = self.guard.limits
        if self._phase is _Phase.HEADERS:
            message = f"the request headers did not arrive within {limits.header_timeout:g} s"
            if not self._header_bytes:  # not a byte of a request: nothing to answer
                self.guard.refused[ErrorCode.REQUEST_TIMEOUT] += 1
                self._refused = True
                self.transport.close()
                return
        elif self._phase is _Phase.BODY:
            message = f"the request body did not arrive within {limits.body_timeout:g} s"
        else:
            return
        self._refuse(_Refused(408, ErrorCode.REQUEST_TIMEOUT, message))

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _bad_request(self) -> None:
        self._disarm()
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _refuse(self, refusal: _Refused) -> None:
        """Answer ``refusal`` (unless an answer has started), count and log it, close."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        self.guard.refused[refusal.code] += 1
        logger.info(
            "refused %s: %s",
            refusal.code,
            refusal.message,
            extra={
                "fields": {
                    "status": refusal.status,
                    "error_codes": [refusal.code],
                    "address": self.client[0] if self.client else None,
                }
            },
        )
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_answer(refusal))
        if cycle is not None and not cycle.response_complete:
            # The app may still be running: it must see a disconnect, and write nothing more.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


class _Addresses:
    """A set of addresses and networks (``GATEWAY_TRUSTED_PROXIES``; ``*``: any)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._any = "*" in entries
        self._networks = []
        self._literals = set()
        for entry in entries:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._literals.add(entry)

    def __contains__(self, address: str) -> bool:
        if self._any or address in self._literals:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


def _answer(refusal: _Refused) -> bytes:
    body = json.dumps(
        {"errors": [{"message": refusal.message, "extensions": {"code": refusal.code}}]}
    ).encode()
    reason = _REASONS.get(refusal.status, b"Service Unavailable")
    head = [
        b"HTTP/1.1 %d %s" % (refusal.status, reason),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"cache-control: no-store",
        b"connection: close",
    ]
    if refusal.status == 503:
        head.append(b"retry-after: 1")
    return b"\r\n".join(head) + b"\r\n\r\n" + body
