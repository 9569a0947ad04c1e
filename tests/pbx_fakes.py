"""A fake PBX as a plain ``httpx.MockTransport`` handler, and a client and session over it.

:class:`FakePbx` plays the documented API (``pbx-api.md``): login with the MD5 of the
password, tokens, token errors, lockout, heartbeat, logout and ``conference/query``,
and records every request so tests can count what the PBX saw. ``script`` queues canned
answers per endpoint for the odd cases a test wants to provoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.session import PbxSession
from gateway.secrets import Secret
from gateway.settings import PasswordSource, Settings
from tests.timing import FakeClock

BASE_URL = "http://pbx.test:8088"
USERNAME = "api"
PASSWORD = "s3cret-password"

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def md5_hex(text: str) -> str:
    """What the PBX login expects as ``password``."""
    return hashlib.md5(text.encode()).hexdigest()


def ok(**fields: Any) -> httpx.Response:
    """A ``Success`` envelope with ``fields``."""
    return httpx.Response(200, json={"status": "Success", **fields})


def failed(errno: str | int | None) -> httpx.Response:
    """A ``Failed`` envelope; ``None`` leaves ``errno`` out."""
    body: dict[str, Any] = {"status": "Failed"}
    if errno is not None:
        body["errno"] = errno
    return httpx.Response(200, json=body)


def conference(number: str, **overrides: Any) -> dict[str, Any]:
    """A ``ConferenceInfo`` as the S-Series sends it (all strings)."""
    raw: dict[str, Any] = {
        "number": number,
        "name": f"Room {number}",
        "participantepassword": "",
        "moderatorpassword": "",
        "waitformoderator": "no",
        "allowinvite": "yes",
        "moderators": "",
        "musiconhold": "no",
        "mute": "no",
        "prompt": "default",
    }
    raw.update(overrides)
    return raw


@dataclass
class Seen:
    """One request as the fake PBX received it."""

    endpoint: str
    token: str | None
    body: Any
    method: str
    path: str
    content_type: str | None


@dataclass
class FakePbx:
    """A PBX in a handler: tokens, credentials, lockout, conferences, request log."""

    username: str = USERNAME
    password_md5: str = field(default_factory=lambda: md5_hex(PASSWORD))
    conferences: list[dict[str, Any]] = field(
        default_factory=lambda: [conference("6400"), conference("6401"), conference("6402")]
    )
    # A batch naming an unknown number fails with this errno (pbx-api.md's case (c)).
    unknown_number_errno: str | None = None
    locked_out: bool = False
    clock: Callable[[], float] | None = None
    gate: asyncio.Event | None = None
    script: dict[str, list[Answer]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    failed_login_times: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def count(self, endpoint: str) -> int:
        return sum(1 for s in self.seen if s.endpoint == endpoint)

    def bodies(self, endpoint: str) -> list[Any]:
        return [s.body for s in self.seen if s.endpoint == endpoint]

    def expire_tokens(self) -> None:
        """Erase every token, as 30 idle minutes would."""
        self.tokens.clear()

    def queue(self, endpoint: str, *answers: Answer) -> None:
        """Answer the next calls to ``endpoint`` with ``answers``, in order."""
        self.script.setdefault(endpoint, []).extend(answers)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.removeprefix("/api/v2.0.0/")
        raw = request.content
        body = json.loads(raw) if raw else None
        self.seen.append(
            Seen(
                endpoint=endpoint,
                token=request.url.params.get("token"),
                body=body,
                method=request.method,
                path=request.url.path,
                content_type=request.headers.get("content-type"),
            )
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)  # let other callers overlap with this one
            queued = self.script.get(endpoint)
            if queued:
                answer = queued.pop(0)
                return answer if isinstance(answer, httpx.Response) else answer(request)
            return self._answer(endpoint, request.url.params.get("token"), body)
        finally:
            self.in_flight -= 1

    def _answer(self, endpoint: str, token: str | None, body: Any) -> httpx.Response:
        if endpoint == "login":
            return self._login(body)
        if not token:
            return failed("20005")
        if token not in self.tokens:
            return failed("20004")
        if endpoint == "heartbeat":
            return ok()
        if endpoint == "logout":
            self.tokens.discard(token)
            return ok()
        if endpoint == "conference/query":
            return self._query(body["number"])
        return failed("10003")

    def _login(self, body: Any) -> httpx.Response:
        if self.locked_out:
            return failed("20002")
        if body.get("username") != self.username or body.get("password") != self.password_md5:
            self.failed_login_times.append(self.clock() if self.clock is not None else 0.0)
            return failed("20003")
        token = md5_hex(f"token-{len(self.issued)}")
        self.tokens.add(token)
        self.issued.append(token)
        return ok(token=token, transport="HTTP")

    def _query(self, number: str) -> httpx.Response:
        by_number = {c["number"]: c for c in self.conferences}
        if number == "all":
            return ok(conferences=list(by_number.values()))
        wanted = number.split(",")
        if self.unknown_number_errno is not None and any(n not in by_number for n in wanted):
            return failed(self.unknown_number_errno)
        # Reversed on purpose: callers must match by number, never by position.
        return ok(conferences=[by_number[n] for n in reversed(wanted) if n in by_number])


@contextlib.asynccontextmanager
async def pbx_client(
    transport: httpx.AsyncBaseTransport, *, max_concurrency: int = Settings.pbx_max_concurrency
) -> AsyncIterator[PbxClient]:
    """A :class:`PbxClient` over ``transport``, closed on exit."""
    async with build_http_client(
        base_url=BASE_URL, timeout=5.0, verify=True, transport=transport
    ) as http:
        yield PbxClient(http, max_concurrency=max_concurrency)


@contextlib.asynccontextmanager
async def pbx_session(
    transport: httpx.AsyncBaseTransport,
    *,
    password: PasswordSource | None = None,
    clock: Callable[[], float] | None = None,
    max_concurrency: int = Settings.pbx_max_concurrency,
    heartbeat_interval: float = Settings.pbx_heartbeat_interval,
    login_cooldown: float = Settings.pbx_login_cooldown,
    lockout_backoff: float = Settings.pbx_lockout_backoff,
) -> AsyncIterator[PbxSession]:
    """A :class:`PbxSession` over ``transport``; closed (logged out) on exit."""
    async with pbx_client(transport, max_concurrency=max_concurrency) as client:
        session = PbxSession(
            client,
            username=USERNAME,
            password=password or PasswordSource(md5=Secret(md5_hex(PASSWORD))),
            heartbeat_interval=heartbeat_interval,
            login_cooldown=login_cooldown,
            lockout_backoff=lockout_backoff,
            clock=clock or FakeClock(),
        )
        try:
            yield session
        finally:
            await session.close()
