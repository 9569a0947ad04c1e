"""The PBX's TCP report channel, client side: connect, log in, read ``ConferenceStatus``.

pbx-api.md "Events" (S-Series v2 ``api-reports.html``, ``pbx-api-settings.html``): with the
TCP report method the application is the client; it connects to the report port set on the
PBX's API page and logs in with plain-text lines, the password in *clear*::

    Action: login
    Username: api
    Secret: <the clear password>
    Version: 2.0.0

and only after an accepted login does the PBX send events on that connection, until it
closes. What the docs leave open is chosen as the simulator chose it (README facts table):
the block ends with an empty line; the answer is ``Response: Success`` or ``Response:
Error`` with a ``Message`` line (``IP locked`` when the address is locked out) and an empty
line; events follow as one JSON object per CRLF-ended line.

Everything is bounded: the connect and the login answer by ``login_timeout``, the answer by
``MAX_ANSWER_BYTES``, an event line by ``max_line`` (a longer line drops the connection:
reading on would mean buffering without bound, and framing after it cannot be trusted). A
line that is not JSON, an event that is not ``ConferenceStatus``, or a status without a
readable room number is skipped and counted; the connection goes on. Reading waits without
a deadline (events are sparse); a dead peer is found by TCP keepalive.

The password is written to the socket and nowhere else: errors say what happened, never it.
Whether a login may be tried, and what a refusal means for the next one, is the caller's
concern (the PBX session's guard; see :mod:`gateway.live.event_source`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from gateway.errors import PbxAuthError, PbxConnectionError, PbxLockedOutError
from gateway.pbx.errnos import errno_meaning
from gateway.pbx.sessions_query import LiveSession, MemberNotes, decode_session
from gateway.secrets import Secret

ENDPOINT: Final = "report channel"
API_VERSION: Final = "2.0.0"
MAX_LINE_BYTES: Final = 1 << 20
"""The longest event line read (1 MiB; a room of hundreds of members is far below it)."""
MAX_ANSWER_BYTES: Final = 4096
LOGIN_TIMEOUT_SECONDS: Final = 10.0
EVENT_NAME: Final = "ConferenceStatus"
LOCKED_MESSAGE: Final = "ip locked"
# Keepalive: a silent peer is probed after 60 s idle, every 15 s, and given up after 4
# unanswered probes, so a dead PBX or a broken path is noticed within about two minutes.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 60, 15, 4


class ReportChannelError(PbxConnectionError):
    """The report channel could not be opened, or it closed or broke."""


@dataclass
class ChannelCounts:
    """What the reader skipped or saw, summed over every connection that shares it."""

    statuses: int = 0
    """``ConferenceStatus`` events read."""
    lines_too_long: int = 0
    unreadable_lines: int = 0
    """Lines (or pushed bodies) that were not JSON, not an object, or a status without a
    room number."""
    other_events: int = 0


@dataclass(frozen=True, slots=True)
class RoomStatus:
    """One ``ConferenceStatus``: room ``number`` as the PBX reports it; None: nobody is in."""

    number: str
    session: LiveSession | None


class ReportChannel:
    """One logged-in report connection: :meth:`statuses`, then :meth:`close`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counts: ChannelCounts,
        notes: MemberNotes | None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._counts, self._notes = counts, notes

    async def statuses(self) -> AsyncIterator[RoomStatus]:
        """Every room status as it comes; raises :class:`ReportChannelError` when the
        connection ends (closed, broken, or a line over the bound)."""
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self._counts.lines_too_long += 1
                raise ReportChannelError(
                    "the PBX sent a report line longer than the bound; connection dropped",
                    endpoint=ENDPOINT,
                ) from None
            except asyncio.IncompleteReadError:
                raise ReportChannelError(
                    "the PBX closed the report channel", endpoint=ENDPOINT
                ) from None
            except OSError as exc:
                raise ReportChannelError(
                    f"the report channel broke ({type(exc).__name__})", endpoint=ENDPOINT
                ) from None
            status = self._read(line)
            if status is not None:
                yield status

    def _read(self, line: bytes) -> RoomStatus | None:
        text = line.strip()
        if not text:
            return None  # a blank line (a keep-alive of some kind): nothing to skip
        try:
            event = json.loads(text)
        except ValueError:
            self._counts.unreadable_lines += 1
            return None
        return read_status(event, self._counts, self._notes)

    async def close(self) -> None:
        """Close the connection (and wait briefly for it to go)."""
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()


def read_status(
    event: object, counts: ChannelCounts, notes: MemberNotes | None = None
) -> RoomStatus | None:
    """One decoded report (by either report method) as a room status, or None (counted):
    not an object, another kind of event, or a status without a readable room number."""
    if not isinstance(event, dict):
        counts.unreadable_lines += 1
        return None
    name = event.get("event", event.get("action"))
    if name != EVENT_NAME:
        counts.other_events += 1  # other reports (extension status, ...): not ours
        return None
    session = decode_session(event, notes)
    if session is None:
        counts.unreadable_lines += 1
        return None
    counts.statuses += 1
    # The last member leaving sends an empty member list: the room is empty.
    return RoomStatus(session.number, session if session.members else None)


async def open_report_channel(
    host: str,
    port: int,
    username: str,
    secret: Secret,
    *,
    login_timeout: float = LOGIN_TIMEOUT_SECONDS,
    max_line: int = MAX_LINE_BYTES,
    counts: ChannelCounts | None = None,
    notes: MemberNotes | None = None,
) -> ReportChannel:
    """Connect and log in; the logged-in channel.

    Raises :class:`ReportChannelError` when no connection or no answer could be had (not a
    login attempt the PBX counted, as far as can be known), :class:`PbxLockedOutError` on
    ``IP locked``, :class:`PbxAuthError` on any other refusal.
    """
    try:
        # asyncio.timeout, not wait_for: a cancel that lands as the connection completes
        # must not leave the connection open behind our back (wait_for runs it in a task).
        async with asyncio.timeout(login_timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=max_line)
    except (OSError, TimeoutError) as exc:
        raise ReportChannelError(
            f"cannot connect to the PBX's report port ({type(exc).__name__})",
            endpoint=ENDPOINT,
            hint=f"is PBX_REPORT_PORT ({port}) the TCP port set on the PBX's API page?",
        ) from None
    _keep_alive(writer)
    try:
        login = (
            f"Action: login\r\nUsername: {username}\r\nSecret: {secret.reveal()}\r\n"
            f"Version: {API_VERSION}\r\n\r\n"
        )
        writer.write(login.encode("utf-8"))
        async with asyncio.timeout(login_timeout):
            answer = await _answer(reader)
    except (OSError, TimeoutError, ReportChannelError) as exc:
        writer.close()
        if isinstance(exc, ReportChannelError):
            raise
        raise ReportChannelError(
            f"no answer to the report login ({type(exc).__name__})", endpoint=ENDPOINT
        ) from None
    except BaseException:
        writer.close()
        raise
    if answer.get("response", "").lower() == "success":
        return ReportChannel(reader, writer, counts or ChannelCounts(), notes)
    writer.close()
    if answer.get("message", "").strip().lower() == LOCKED_MESSAGE:
        raise PbxLockedOutError(
            "the PBX refused the report channel's login: this address is locked out after "
            "failed logins",
            endpoint=ENDPOINT,
            errno=None,
            meaning="IP locked",
        )
    raise PbxAuthError(
        "the PBX refused the report channel's login (username or password); the same "
        "credentials serve the API, so check PBX_USERNAME and the password setting",
        endpoint=ENDPOINT,
        errno=None,
        meaning=errno_meaning(None),
    )


async def _answer(reader: asyncio.StreamReader) -> dict[str, str]:
    """``Key: value`` lines up to an empty line, keys lower-cased; bounded in size."""
    fields: dict[str, str] = {}
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise ReportChannelError(
                "the PBX closed the report channel before answering the login",
                endpoint=ENDPOINT,
            ) from None
        except asyncio.LimitOverrunError:
            line = b""
            size = MAX_ANSWER_BYTES + 1
        size += len(line)
        if size > MAX_ANSWER_BYTES:
            raise ReportChannelError(
                "the report login's answer is not the PBX's (too long)", endpoint=ENDPOINT
            )
        text = line.decode("utf-8", "replace").strip()
        if not text:
            if fields:
                return fields
            continue
        key, _, value = text.partition(":")
        fields[key.strip().lower()] = value.strip()


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive on the connection, so a peer that vanished is noticed while idle."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            option = getattr(socket, name, None)
            if option is not None:  # not every platform has each one
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
