"""The answers of a PBX having a bad day: garbage bodies, connections dropped mid-answer, and
answers dripped out one byte at a time.

A dropped connection is played at the ASGI level: the response starts with a ``Content-Length``
larger than what follows, then ``SimulatedConnectionDrop`` is raised. Under uvicorn that closes
the socket mid-body, so a client sees a protocol error; under ``httpx.ASGITransport`` the
exception reaches the caller as a ``ConnectionResetError``. Drops are meant for loopback tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.simulator.envelope import BOA_HEADERS, failed
from gateway.simulator.faults import ArmedFault, GarbageKind

_HTML = b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>\n"
_ERROR_HTML = b"<html><head><title>500 Server Error</title></head><body>Boa</body></html>\n"
_PARTIAL_JSON = b'{"status": "Success", "conferences": [{"number": "64'


class SimulatedConnectionDrop(ConnectionResetError):
    """Raised on purpose to cut a connection mid-answer."""


class _DropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for a drop the test asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        return not (exc_type is not None and issubclass(exc_type, SimulatedConnectionDrop))


def quiet_uvicorn_about_drops() -> None:
    """Install the filter once on uvicorn's error logger (only drops are filtered)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DropFilter) for existing in logger.filters):
        logger.addFilter(_DropFilter())


class DroppedResponse(Response):
    """Promises 200 bytes of JSON, sends a few, then breaks the connection."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"200")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _PARTIAL_JSON[:20], "more_body": True})
        raise SimulatedConnectionDrop("simulator: connection dropped on purpose")


def garbage(kind: GarbageKind) -> Response:
    """An answer no PBX client can decode, of the requested ``kind``."""
    if kind == "html":
        return Response(_HTML, status_code=200, headers=BOA_HEADERS, media_type="text/html")
    if kind == "truncated":
        return Response(
            _PARTIAL_JSON, status_code=200, headers=BOA_HEADERS, media_type="application/json"
        )
    if kind == "empty":
        return Response(b"", status_code=200, headers=BOA_HEADERS, media_type="application/json")
    return Response(_ERROR_HTML, status_code=500, headers=BOA_HEADERS, media_type="text/html")


def fault_answer(fault: ArmedFault) -> Response:
    """What a call gets instead of its real answer when an answer fault is armed."""
    if fault.kind == "drop":
        return DroppedResponse()
    if fault.kind == "garbage":
        return garbage(fault.garbage)
    if fault.errordata is not None:
        return failed(fault.errno, errordata=fault.errordata)
    return failed(fault.errno)


class DrippingResponse(Response):
    """Sends ``inner``'s body one byte every ``interval`` seconds, with its true length.

    Stops when the client hangs up (nobody would read the rest), and sends the rest at once
    when ``hurry()`` turns true (faults cleared, shutting down). ``done`` runs when it ends
    either way: the call stays in flight until then, as on a PBX still writing its answer.
    """

    def __init__(
        self,
        inner: Response,
        interval: float,
        *,
        hurry: Callable[[], bool],
        done: Callable[[], None],
    ) -> None:
        super().__init__(b"", status_code=inner.status_code)
        self._inner, self._interval, self._hurry, self._done = inner, interval, hurry, done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            body = bytes(self._inner.body)
            headers = [(k, v) for k, v in self._inner.raw_headers if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": headers}
            )
            for index in range(len(body)):
                if gone.is_set():
                    return
                if self._hurry():
                    await send({"type": "http.response.body", "body": body[index:]})
                    return
                last = index == len(body) - 1
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[index : index + 1],
                        "more_body": not last,
                    }
                )
                if not last:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), self._interval)
            if not body:
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._done()
