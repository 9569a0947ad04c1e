"""The PBX session and conference query against the real simulator, in-process and over HTTP.

Each test runs twice: through ``httpx.ASGITransport`` straight into the simulator app, and over
a real loopback socket to a ``SimulatorServer``; the session behaviour tests (login, token
renewal, heartbeat, wrong credentials) also run against every firmware profile
(``pbx_profile``). What the PBX saw is read from the simulator's
own counters. The session's cool-down clock is a fake one; the simulator's clock is moved with
``advance_time`` alongside it when a test needs time to pass on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.errors import (
    GatewayError,
    PbxAuthError,
    PbxConnectionError,
    PbxLockedOutError,
    PbxProtocolError,
    PbxTransientError,
)
from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.conference_query import query_conferences
from gateway.pbx.login_guard import MAX_UNCHANGED_FAILURES
from gateway.pbx.session import PbxSession
from gateway.secrets import Secret
from gateway.settings import PasswordSource, Settings
from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorServer,
    SimulatorState,
    create_simulator_app,
    password_digest,
)
from gateway.simulator.profiles import profile_config
from tests.timing import FakeClock, eventually

CLIENT_ADDRESS = "127.0.0.1"  # ASGITransport's default client, and the loopback client


@dataclass
class Sim:
    """One running simulated PBX and how to reach it."""

    state: SimulatorState
    base_url: str
    transport: httpx.AsyncBaseTransport | None  # None: a real socket to base_url
    mode: str


@pytest.fixture(params=["asgi", "loopback"])
def mode(request: pytest.FixtureRequest) -> str:
    """In-process (ASGITransport) or over loopback HTTP (SimulatorServer)."""
    value: str = request.param
    return value


@contextlib.asynccontextmanager
async def simulator(mode: str, config: SimulatorConfig | None = None) -> AsyncIterator[Sim]:
    """A fresh simulated PBX in ``mode``."""
    if mode == "asgi":
        app = create_simulator_app(config)
        yield Sim(app.state.simulator, "http://pbx.test", httpx.ASGITransport(app=app), mode)
        return
    async with SimulatorServer(config) as server:
        yield Sim(server.state, server.base_url, None, mode)


@contextlib.asynccontextmanager
async def session_for(
    sim: Sim,
    *,
    password: PasswordSource | None = None,
    clock: Callable[[], float] | None = None,
    max_concurrency: int = Settings.pbx_max_concurrency,
    heartbeat_interval: float = Settings.pbx_heartbeat_interval,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[PbxSession]:
    """The gateway's session against ``sim``, closed (logged out) on exit."""
    async with build_http_client(
        base_url=sim.base_url, timeout=5.0, verify=True, transport=transport or sim.transport
    ) as http:
        session = PbxSession(
            PbxClient(http, max_concurrency=max_concurrency),
            username=DEMO_USERNAME,
            password=password or PasswordSource(md5=Secret(password_digest(DEMO_PASSWORD))),
            heartbeat_interval=heartbeat_interval,
            clock=clock or FakeClock(),
        )
        try:
            yield session
        finally:
            await session.close()


def wrong_password() -> PasswordSource:
    return PasswordSource(md5=Secret(password_digest("not-" + DEMO_PASSWORD)))


# --- login ---------------------------------------------------------------------------------


async def test_simulator_first_query_logs_in_once(mode: str) -> None:
    """The first query logs in once and finds the room; later queries reuse the token."""
    async with simulator(mode) as sim, session_for(sim) as session:
        found = await query_conferences(session, ["6400", "6401", "9999"])
        again = await query_conferences(session, ["6402"])
        assert sorted(found) == ["6400", "6401"]
        assert list(again) == ["6402"]
        assert sim.state.stats.logins_succeeded == 1
        assert sim.state.stats.calls["login"] == 1
        assert sim.state.stats.query_numbers == ["6400,6401,9999", "6402"]


async def test_simulator_fifty_concurrent_first_queries_log_in_once(
    mode: str, pbx_profile: str
) -> None:
    """Fifty concurrent first queries cause exactly one login on the simulator."""
    async with simulator(mode, profile_config(pbx_profile)) as sim, session_for(sim) as session:
        results = await asyncio.gather(
            *(query_conferences(session, [f"64{i % 12:02d}"]) for i in range(50))
        )
        assert all(len(r) == 1 for r in results)
        assert sim.state.stats.calls["login"] == 1
        assert sim.state.stats.logins_succeeded == 1
        assert sim.state.stats.calls["conference/query"] == 50


# --- token renewal -------------------------------------------------------------------------


@pytest.mark.parametrize("expired_errno", ["20006", "20004"])
async def test_simulator_expired_tokens_are_replaced_silently(
    mode: str, expired_errno: str
) -> None:
    """Tokens the simulator expires are replaced (one login each time); no caller sees an error."""
    config = SimulatorConfig(expired_errno=expired_errno)
    async with simulator(mode, config) as sim, session_for(sim) as session:
        await query_conferences(session, ["6400"])
        for round_ in range(3):
            assert sim.state.expire_tokens() == 1
            results = await asyncio.gather(
                *(query_conferences(session, ["6401"]) for _ in range(20))
            )
            assert all(list(r) == ["6401"] for r in results)
            assert sim.state.stats.logins_succeeded == 2 + round_
        assert sim.state.stats.logins_failed == 0


async def test_simulator_idle_timeout_is_replaced_silently(mode: str, pbx_profile: str) -> None:
    """A token left idle past its lifetime (simulator time moved on) is replaced without error."""
    async with simulator(mode, profile_config(pbx_profile)) as sim, session_for(sim) as session:
        await query_conferences(session, ["6400"])
        sim.state.advance_time(1801)
        assert list(await query_conferences(session, ["6400"])) == ["6400"]
        assert sim.state.stats.logins_succeeded == 2


async def test_simulator_heartbeat_keeps_token_alive(mode: str, pbx_profile: str) -> None:
    """A heartbeat within the token lifetime keeps the same token: no new login after."""
    async with simulator(mode, profile_config(pbx_profile)) as sim, session_for(sim) as session:
        await query_conferences(session, ["6400"])
        for _ in range(3):
            sim.state.advance_time(1200)
            await session.heartbeat()
        await query_conferences(session, ["6400"])
        assert sim.state.stats.logins_succeeded == 1
        assert sim.state.stats.heartbeats == 3


# --- wrong credentials and lockout ---------------------------------------------------------


async def test_simulator_wrong_credentials_fail_one_login(mode: str, pbx_profile: str) -> None:
    """Wrong credentials: one failed login on the PBX, not five, however many callers ask."""
    async with (
        simulator(mode, profile_config(pbx_profile)) as sim,
        session_for(sim, password=wrong_password()) as session,
    ):
        outcomes = await asyncio.gather(
            *(query_conferences(session, ["6400"]) for _ in range(30)), return_exceptions=True
        )
        for _ in range(30):
            with pytest.raises(PbxAuthError) as info:
                await query_conferences(session, ["6400"])
            outcomes.append(info.value)
        assert all(isinstance(o, PbxAuthError) for o in outcomes)
        assert all("PBX_USERNAME" in str(o) for o in outcomes)
        assert sim.state.stats.logins_failed == 1
        assert sim.state.stats.calls["login"] == 1
        assert sim.state.lockout.failures(CLIENT_ADDRESS) == 1


async def test_simulator_rotated_password_file_recovers(
    mode: str, pbx_profile: str, tmp_path: Path
) -> None:
    """After a rejection, a corrected password file is used at once and the query works."""
    path = tmp_path / "password"
    path.write_text("wrong\n", encoding="utf-8")
    source = PasswordSource(path=path)
    async with (
        simulator(mode, profile_config(pbx_profile)) as sim,
        session_for(sim, password=source) as session,
    ):
        with pytest.raises(PbxAuthError):
            await query_conferences(session, ["6400"])
        path.write_text(DEMO_PASSWORD + "\n", encoding="utf-8")
        assert list(await query_conferences(session, ["6400"])) == ["6400"]
        assert sim.state.stats.logins_failed == 1
        assert sim.state.stats.logins_succeeded == 1
        assert sim.state.lockout.failures(CLIENT_ADDRESS) == 0


async def test_simulator_wrong_credentials_for_hours_never_lock_out(
    mode: str, pbx_profile: str
) -> None:
    """Credentials that stay wrong for hours never get the gateway's address locked out.

    The simulator counts consecutive failed logins with no time decay (only a success or the
    lock's end resets the count); pbx-api.md does not say the PBX forgets failures after ten
    minutes, so the gateway must not rely on it.
    """
    clock = FakeClock()
    async with (
        simulator(mode, profile_config(pbx_profile)) as sim,
        session_for(sim, password=wrong_password(), clock=clock) as session,
    ):
        locked_at: list[int] = []
        for hour_tenth in range(36):  # six hours, in ten-minute steps
            with pytest.raises((PbxAuthError, PbxLockedOutError)):
                await query_conferences(session, ["6400"])
            if sim.state.lockout.locked_addresses(sim.state.now()):
                locked_at.append(hour_tenth)
            clock.advance(600)
            sim.state.advance_time(600)
        assert locked_at == []
        assert sim.state.stats.logins_locked == 0


@pytest.mark.parametrize("errno", ["30003", "39999", "20003"])
async def test_simulator_login_refused_with_any_errno_never_locks_out(
    mode: str, errno: str
) -> None:
    """A login answered Failed with any errno (K2's 30003 via the login-30003 profile, one
    never seen) counts as a rejection: over six simulated hours, start-up loop and queries
    together, the same credentials are tried twice at most and the address is never locked."""
    if errno == "30003":
        config = profile_config("login-30003")
    else:
        config = SimulatorConfig(login_failure_errno=errno)
    clock = FakeClock()
    async with (
        simulator(mode, config) as sim,
        session_for(sim, password=wrong_password(), clock=clock) as session,
    ):
        session.start(login_now=True)
        await session.started()
        await eventually(lambda: not session.starting)  # the start-up loop gave up at once
        assert sim.state.stats.logins_failed == 1
        outcomes: list[object] = []
        for _ in range(36):  # six hours, in ten-minute steps
            outcomes += await asyncio.gather(
                *(query_conferences(session, ["6400"]) for _ in range(5)),
                return_exceptions=True,
            )
            clock.advance(600)
            sim.state.advance_time(600)
        assert all(isinstance(o, PbxAuthError) for o in outcomes)
        assert all(errno in str(o) and "PBX_USERNAME" in str(o) for o in outcomes)
        assert sim.state.stats.logins_failed == MAX_UNCHANGED_FAILURES
        assert sim.state.stats.logins_locked == 0
        assert sim.state.lockout.locked_addresses(sim.state.now()) == []


async def test_simulator_login_30003_then_right_password_logs_in(mode: str, tmp_path: Path) -> None:
    """Under login-30003, a rejected login is not retried blindly, yet a corrected password
    file logs in at once and the query works."""
    path = tmp_path / "password"
    path.write_text("wrong\n", encoding="utf-8")
    async with (
        simulator(mode, profile_config("login-30003")) as sim,
        session_for(sim, password=PasswordSource(path=path)) as session,
    ):
        with pytest.raises(PbxAuthError) as info:
            await query_conferences(session, ["6400"])
        assert info.value.errno == "30003"
        with pytest.raises(PbxAuthError):
            await query_conferences(session, ["6400"])  # cool-down: no second attempt
        path.write_text(DEMO_PASSWORD + "\n", encoding="utf-8")
        assert list(await query_conferences(session, ["6400"])) == ["6400"]
        assert sim.state.stats.logins_failed == 1
        assert sim.state.stats.logins_succeeded == 1


async def test_simulator_locked_out_address_is_reported(mode: str) -> None:
    """An address the PBX has locked out is reported as locked out, with one login attempt."""
    async with simulator(mode) as sim, session_for(sim) as session:
        for _ in range(5):
            sim.state.lockout.record_failure(CLIENT_ADDRESS, sim.state.now(), 5, 600.0)
        assert sim.state.lockout.locked_addresses(sim.state.now()) == [CLIENT_ADDRESS]
        outcomes = await asyncio.gather(
            *(query_conferences(session, ["6400"]) for _ in range(10)), return_exceptions=True
        )
        with pytest.raises(PbxLockedOutError) as info:
            await query_conferences(session, ["6400"])
        outcomes.append(info.value)
        for error in outcomes:
            assert isinstance(error, PbxLockedOutError)
            assert "locked out" in str(error)
            assert error.extensions["code"] == "PBX_LOCKED_OUT"
        assert sim.state.stats.logins_locked == 1
        assert sim.state.stats.calls["login"] == 1


# --- heartbeat, logout, concurrency --------------------------------------------------------


async def test_simulator_heartbeat_carries_ipaddr_the_pbx_requires(mode: str) -> None:
    """Against heartbeat-ipaddr (the PBX refuses a heartbeat without ipaddr), every heartbeat
    carries our local address and is accepted; the token lives on with no new login."""
    async with simulator(mode, profile_config("heartbeat-ipaddr")) as sim:
        recorder = RecordingTransport(sim.transport or httpx.AsyncHTTPTransport())
        async with session_for(sim, transport=recorder) as session:
            await query_conferences(session, ["6400"])
            for _ in range(3):
                sim.state.advance_time(1200)
                await session.heartbeat()
            assert list(await query_conferences(session, ["6400"])) == ["6400"]
        stats = sim.state.stats
        assert stats.heartbeats == 3
        assert stats.heartbeats_refused == 0
        assert stats.logins_succeeded == 1
        assert recorder.bodies["heartbeat"] == [{"ipaddr": CLIENT_ADDRESS}] * 3


async def test_simulator_heartbeat_accepted_on_every_profile(mode: str, pbx_profile: str) -> None:
    """On every firmware profile (heartbeat-ipaddr and field-worst included), heartbeats are
    accepted and keep the one token alive: no refusal, no second login. The call that logs
    in reads no room, so the test does not depend on how rooms are decoded."""
    async with (
        simulator(mode, profile_config(pbx_profile)) as sim,
        session_for(sim) as session,
    ):
        await session.call("conference/query", {"number": "6400"}, idempotent=True)
        for _ in range(3):
            sim.state.advance_time(1200)
            await session.heartbeat()
        await session.call("conference/query", {"number": "6401"}, idempotent=True)
        assert sim.state.stats.heartbeats == 3
        assert sim.state.stats.heartbeats_refused == 0
        assert sim.state.stats.logins_succeeded == 1


async def test_simulator_failed_heartbeat_is_logged_and_costs_no_login(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat the PBX refuses for a reason other than the token (10004, 30003) is logged
    as a warning; the token is kept and the next query needs no login."""
    async with simulator(mode) as sim, session_for(sim) as session:
        await query_conferences(session, ["6400"])
        for errno in ("10004", "30003"):
            sim.state.fail_next(1, errno, endpoint="heartbeat")
            await session.heartbeat()
            assert session.has_token
        assert list(await query_conferences(session, ["6401"])) == ["6401"]
        assert sim.state.stats.logins_succeeded == 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert sum("heartbeat failed" in w for w in warnings) == 2


async def test_simulator_heartbeat_with_dead_token_costs_one_login_later(mode: str) -> None:
    """A heartbeat answered with a token errno drops the token; the next query logs in once."""
    async with simulator(mode, profile_config("expired-20004")) as sim, session_for(sim) as session:
        await query_conferences(session, ["6400"])
        sim.state.advance_time(1801)
        await session.heartbeat()
        assert not session.has_token
        assert sim.state.stats.logins_succeeded == 1
        assert list(await query_conferences(session, ["6400"])) == ["6400"]
        assert sim.state.stats.logins_succeeded == 2


async def test_simulator_heartbeats_and_logout_happen(mode: str, pbx_profile: str) -> None:
    """start() heartbeats on its interval; close() stops them and logs out, ending the token."""
    async with (
        simulator(mode, profile_config(pbx_profile)) as sim,
        session_for(sim, heartbeat_interval=0.01) as session,
    ):
        await query_conferences(session, ["6400"])
        before = asyncio.all_tasks()
        session.start()
        timers = asyncio.all_tasks() - before
        await eventually(lambda: sim.state.stats.heartbeats >= 3)
        await session.close()
        assert timers and all(task.done() for task in timers)
        assert sim.state.stats.logouts == 1
        assert sim.state.stats_json()["live_tokens"] == 0
    assert sim.state.stats.logouts == 1


async def test_simulator_concurrency_cap_holds(mode: str) -> None:
    """With latency and 20 concurrent calls, the simulator never has more than the cap inside."""
    async with simulator(mode) as sim, session_for(sim, max_concurrency=2) as session:
        sim.state.configure(latency=0.02)
        results = await asyncio.gather(
            *(query_conferences(session, [f"64{i % 12:02d}"]) for i in range(20))
        )
        assert len(results) == 20
        assert sim.state.stats.calls["conference/query"] == 20
        assert 1 <= sim.state.stats.max_in_flight <= 2


async def test_simulator_dropped_connection_is_retried_once_for_queries() -> None:
    """Over loopback, a query whose connection drops mid-answer is sent again once and works;
    two drops in a row reach the caller as PbxConnectionError."""
    async with simulator("loopback") as sim, session_for(sim) as session:
        await query_conferences(session, ["6400"])
        sim.state.drop_next(1, endpoint="conference/query")
        assert list(await query_conferences(session, ["6401"])) == ["6401"]
        sim.state.drop_next(2, endpoint="conference/query")
        with pytest.raises(PbxConnectionError):
            await query_conferences(session, ["6402"])
        assert sim.state.stats.calls["conference/query"] == 1 + 2 + 2
        assert sim.state.stats.logins_succeeded == 1


# --- secrets -------------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests through and collects every token sent or issued by a login."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.tokens: set[str] = set()
        self.bodies: dict[str, list[object]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = request.url.params.get("token")
        if sent:
            self.tokens.add(sent)
        endpoint = request.url.path.removeprefix("/api/v2.0.0/")
        with contextlib.suppress(ValueError):
            self.bodies.setdefault(endpoint, []).append(json.loads(request.content or b"null"))
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/login"):
            return response
        content = await response.aread()
        await response.aclose()
        with contextlib.suppress(ValueError, AttributeError):
            token = json.loads(content).get("token")
            if isinstance(token, str) and token:
                self.tokens.add(token)
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()


def error_texts(error: BaseException) -> list[str]:
    """str() and repr() of an error and of every error in its cause/context chain."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        if isinstance(current, GatewayError):
            texts.append(repr(current.extensions))
        current = current.__cause__ or current.__context__
    return texts


async def test_simulator_full_run_leaks_no_secret(
    mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs at DEBUG (httpx and httpcore included) and every error's text hold no token,
    password or MD5 through renewals, wrong credentials and faults."""
    password = "Sup3r-Secret-Pa55word"
    md5 = password_digest(password)
    path = tmp_path / "password"
    path.write_text(password, encoding="utf-8")
    clock = FakeClock()
    config = SimulatorConfig(password=password)
    errors: list[BaseException] = []

    async def attempt(numbers: list[str]) -> None:
        try:
            await query_conferences(session, numbers)
        except GatewayError as exc:
            errors.append(exc)

    caplog.set_level(logging.DEBUG)
    async with simulator(mode, config) as sim:
        inner = sim.transport or httpx.AsyncHTTPTransport()
        recorder = RecordingTransport(inner)
        async with session_for(
            sim,
            password=PasswordSource(path=path),
            clock=clock,
            heartbeat_interval=0.01,
            transport=recorder,
        ) as session:
            await asyncio.gather(*(attempt(["6400", "6401"]) for _ in range(10)))
            session.start()
            for errno in ("20006", "20004", "20006"):
                sim.state.configure(expired_errno=errno)
                sim.state.expire_tokens()
                await asyncio.gather(*(attempt(["6402"]) for _ in range(5)))
            await eventually(lambda: sim.state.stats.heartbeats >= 2)

            sim.state.fail_next(1, "30003", endpoint="conference/query")
            await attempt(["6400"])
            for kind in ("html", "truncated", "empty", "500"):
                sim.state.garbage_next(1, kind, endpoint="conference/query")
                await attempt(["6400"])
            if mode == "loopback":  # ASGITransport raises the app's own drop exception instead
                sim.state.drop_next(2, endpoint="conference/query")  # the query and its retry
                await attempt(["6400"])

            # Someone changes the API password on the PBX: tokens end, the next login fails.
            sim.state.set_credentials(DEMO_USERNAME, "changed-on-the-pbx")
            for _ in range(3):
                await attempt(["6400"])
            path.write_text("still-wrong", encoding="utf-8")
            await attempt(["6400"])
            path.write_text("wrong-again", encoding="utf-8")
            await attempt(["6400"])  # changed again: one more (third) attempt is allowed
            sim.state.set_credentials(DEMO_USERNAME, password)
            path.write_text(password, encoding="utf-8")
            clock.advance(600)
            await attempt(["6400"])
            sim.state.expire_tokens()
            await attempt(["6401"])
        await recorder.aclose()
        stats = sim.state.stats

    kinds = {type(e) for e in errors}
    assert {PbxTransientError, PbxProtocolError, PbxAuthError} <= kinds
    if mode == "loopback":
        assert PbxConnectionError in kinds
    assert stats.logins_failed == 3
    assert stats.logins_succeeded >= 6
    assert stats.logouts == 1
    assert len(recorder.tokens) == stats.logins_succeeded
    assert any(r.name == "httpx" for r in caplog.records)
    if mode == "loopback":  # ASGITransport does not go through httpcore
        assert any(r.name.startswith("httpcore") for r in caplog.records)

    texts = [caplog.text, *(r.getMessage() for r in caplog.records)]
    for error in errors:
        texts += error_texts(error)
    secrets = [password, md5, md5.upper(), *recorder.tokens]
    for secret in secrets:
        leaks = [text for text in texts if secret in text]
        assert leaks == [], f"a secret ({len(secret)} chars) leaked into: {leaks[:3]}"
