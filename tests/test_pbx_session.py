"""PbxSession, the token keeper: single-flight login, token renewal, and never a lockout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import (
    PbxApiError,
    PbxAuthError,
    PbxError,
    PbxLockedOutError,
    PbxProtocolError,
    PbxTokenError,
    PbxUnavailableError,
)
from gateway.pbx.login_guard import HARD_STOP_FAILURES, MAX_UNCHANGED_FAILURES
from gateway.pbx.session import PbxSession
from gateway.settings import PasswordSource
from tests.pbx_fakes import (
    PASSWORD,
    USERNAME,
    FakePbx,
    failed,
    md5_hex,
    ok,
    pbx_session,
)
from tests.timing import FakeClock, eventually

QUERY = "conference/query"
BODY = {"number": "6400"}
WRONG_MD5 = md5_hex("not-the-password")


def password_file(tmp_path: Path, text: str) -> PasswordSource:
    path = tmp_path / "pbx-password"
    path.write_text(text + "\n", encoding="utf-8")
    return PasswordSource(path=path)


# --- login ---------------------------------------------------------------------------------


async def test_session_first_call_logs_in_once() -> None:
    """The first call logs in once; later calls reuse the token."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        assert not session.has_token
        for _ in range(3):
            await session.call(QUERY, BODY)
        assert session.has_token
        assert session.logins == 1
    assert pbx.count("login") == 1
    assert [s.token for s in pbx.seen if s.endpoint == QUERY] == [pbx.issued[0]] * 3


async def test_session_login_body_is_username_and_md5_of_password() -> None:
    """Login sends the username and the MD5 hex of the password, and no token."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
    login = next(s for s in pbx.seen if s.endpoint == "login")
    assert login.body == {"username": USERNAME, "password": md5_hex(PASSWORD)}
    assert login.token is None


async def test_session_password_file_holding_md5_is_sent_as_is(tmp_path: Path) -> None:
    """A pre-hashed password file is sent as the login password unchanged (lower-cased)."""
    path = tmp_path / "md5"
    path.write_text(md5_hex(PASSWORD).upper() + "\n", encoding="utf-8")
    pbx = FakePbx()
    source = PasswordSource(path=path, path_holds_md5=True)
    async with pbx_session(pbx.transport(), password=source) as session:
        await session.call(QUERY, BODY)
    assert pbx.bodies("login")[0]["password"] == md5_hex(PASSWORD)


async def test_session_fifty_concurrent_first_calls_log_in_once() -> None:
    """Fifty concurrent first calls share exactly one login."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        results = await asyncio.gather(*(session.call(QUERY, BODY) for _ in range(50)))
    assert len(results) == 50
    assert all(r["status"] == "Success" for r in results)
    assert pbx.count("login") == 1
    assert pbx.count(QUERY) == 50


async def test_session_cancelled_waiter_does_not_cancel_shared_login() -> None:
    """A caller that gives up while the login is in flight does not cancel it for others."""
    gate = asyncio.Event()
    pbx = FakePbx(gate=gate)
    async with pbx_session(pbx.transport()) as session:
        quitter = asyncio.create_task(session.call(QUERY, BODY))
        stayer = asyncio.create_task(session.call(QUERY, BODY))
        await eventually(lambda: pbx.count("login") == 1)
        quitter.cancel()
        gate.set()
        assert (await stayer)["status"] == "Success"
        with pytest.raises(asyncio.CancelledError):
            await quitter
    assert pbx.count("login") == 1


async def test_session_login_success_without_token_is_protocol_error() -> None:
    """A login answered Success but without a token is a PbxProtocolError, not a token."""
    pbx = FakePbx()
    pbx.queue("login", ok(), ok(token=""))
    async with pbx_session(pbx.transport()) as session:
        for _ in range(2):
            with pytest.raises(PbxProtocolError):
                await session.call(QUERY, BODY)
        assert not session.has_token


# --- token renewal -------------------------------------------------------------------------


@pytest.mark.parametrize("errno", ["20004", "20005", "20006"])
async def test_session_token_error_relogs_in_once_and_retries_once(errno: str) -> None:
    """A token error drops the token, logs in once and retries the request once."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        pbx.queue(QUERY, failed(errno))
        result = await session.call(QUERY, BODY)
    assert result["status"] == "Success"
    assert pbx.count("login") == 2
    assert pbx.count(QUERY) == 3
    assert [s.token for s in pbx.seen if s.endpoint == QUERY][-1] == pbx.issued[1]


async def test_session_expired_token_is_replaced_without_error() -> None:
    """Tokens erased by the PBX (30 idle minutes) are replaced; the caller sees no error."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        pbx.expire_tokens()
        assert (await session.call(QUERY, BODY))["status"] == "Success"
    assert pbx.count("login") == 2


async def test_session_second_token_error_is_raised_not_retried_again() -> None:
    """If the retry also hits a token error it is not retried again: the PBX is refusing
    fresh tokens, which the caller sees as PBX_UNAVAILABLE (stale data can be served)."""
    pbx = FakePbx()
    pbx.queue(QUERY, failed("20004"), failed("20006"))
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxUnavailableError) as error:
            await session.call(QUERY, BODY)
    assert isinstance(error.value.__cause__, PbxTokenError)
    assert pbx.count("login") == 2
    assert pbx.count(QUERY) == 2


@pytest.mark.parametrize("max_concurrency", [2, 20])
async def test_session_twenty_callers_hitting_token_error_cause_one_relogin(
    max_concurrency: int,
) -> None:
    """Twenty callers that all hit a dead token at once share one new login."""
    gate = asyncio.Event()
    pbx = FakePbx(gate=gate)
    gate.set()
    async with pbx_session(pbx.transport(), max_concurrency=max_concurrency) as session:
        await session.call(QUERY, BODY)
        pbx.expire_tokens()
        gate.clear()
        calls = [asyncio.create_task(session.call(QUERY, BODY)) for _ in range(20)]
        await eventually(lambda: pbx.in_flight == max_concurrency)
        gate.set()
        results = await asyncio.gather(*calls)
    assert all(r["status"] == "Success" for r in results)
    assert pbx.count("login") == 2
    assert pbx.count(QUERY) == 1 + 20 + 20


async def test_session_stale_token_error_does_not_drop_newer_token() -> None:
    """A late token error for an old token does not throw away the token that replaced it."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        pbx.expire_tokens()
        await session.call(QUERY, BODY)  # renews: token 2
        pbx.queue("heartbeat", failed("20004"))
        await session.heartbeat()  # token 2 reported dead: forgotten
        await session.call(QUERY, BODY)  # token 3
    assert pbx.count("login") == 3


# --- wrong credentials ---------------------------------------------------------------------


async def test_session_wrong_credentials_fail_one_login_for_all_callers() -> None:
    """20003: one failed login for 30 concurrent and 30 sequential callers; each gets the error."""
    pbx = FakePbx(password_md5=WRONG_MD5)
    async with pbx_session(pbx.transport()) as session:
        outcomes = await asyncio.gather(
            *(session.call(QUERY, BODY) for _ in range(30)), return_exceptions=True
        )
        for _ in range(30):
            with pytest.raises(PbxAuthError) as info:
                await session.call(QUERY, BODY)
            outcomes.append(info.value)
        assert session.failed_logins == 1
        assert isinstance(session.blocked_reason, PbxAuthError)
    assert pbx.count("login") == 1
    assert pbx.count(QUERY) == 0
    assert len(outcomes) == 60
    for error in outcomes:
        assert isinstance(error, PbxAuthError)
        assert error.errno == "20003"
        assert error.extensions["code"] == "PBX_AUTH_FAILED"
        assert "PBX_USERNAME" in error.message
        assert "password" in error.message


async def test_session_wrong_credentials_retry_only_after_cooldown() -> None:
    """After 20003 no login happens until the cool-down passes; then exactly one attempt."""
    clock = FakeClock()
    pbx = FakePbx(password_md5=WRONG_MD5)
    async with pbx_session(pbx.transport(), clock=clock, login_cooldown=600) as session:
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        clock.advance(599.9)
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        assert pbx.count("login") == 1
        clock.advance(0.1)
        assert session.blocked_reason is None
        outcomes = await asyncio.gather(
            *(session.call(QUERY, BODY) for _ in range(30)), return_exceptions=True
        )
        assert all(isinstance(o, PbxAuthError) for o in outcomes)
        assert pbx.count("login") == 2


async def test_session_cooldown_ends_with_successful_login_when_pbx_fixed() -> None:
    """When the PBX side is fixed (API user re-enabled), the attempt after the cool-down works."""
    clock = FakeClock()
    pbx = FakePbx(password_md5=WRONG_MD5)
    async with pbx_session(pbx.transport(), clock=clock) as session:
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        pbx.password_md5 = md5_hex(PASSWORD)
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        clock.advance(600)
        assert (await session.call(QUERY, BODY))["status"] == "Success"
        assert session.blocked_reason is None
    assert pbx.count("login") == 2


async def test_session_changed_password_file_allows_new_attempt(tmp_path: Path) -> None:
    """Rewriting the password file during the cool-down allows one new attempt at once."""
    clock = FakeClock()
    source = password_file(tmp_path, "wrong")
    pbx = FakePbx()
    async with pbx_session(pbx.transport(), password=source, clock=clock) as session:
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        assert source.path is not None
        source.path.write_text("wrong\n", encoding="utf-8")  # rewritten, same value
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        assert pbx.count("login") == 1
        source.path.write_text(PASSWORD + "\n", encoding="utf-8")
        assert (await session.call(QUERY, BODY))["status"] == "Success"
    assert pbx.count("login") == 2
    assert pbx.bodies("login")[-1]["password"] == md5_hex(PASSWORD)


async def test_session_unreadable_password_file_keeps_cooldown(tmp_path: Path) -> None:
    """A password file that disappears during the cool-down is no change: no new attempt."""
    source = password_file(tmp_path, "wrong")
    pbx = FakePbx()
    async with pbx_session(pbx.transport(), password=source) as session:
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
        assert source.path is not None
        source.path.unlink()
        with pytest.raises(PbxAuthError):
            await session.call(QUERY, BODY)
    assert pbx.count("login") == 1


@pytest.mark.parametrize("login_cooldown", [1.0, 600.0])
async def test_session_rotating_wrong_passwords_stop_before_the_fifth_failure(
    tmp_path: Path, login_cooldown: float
) -> None:
    """Rotating the password file to wrong values for hours never reaches five failures."""
    clock = FakeClock()
    source = password_file(tmp_path, "wrong-start")
    pbx = FakePbx(clock=clock)
    assert source.path is not None
    async with pbx_session(
        pbx.transport(), password=source, clock=clock, login_cooldown=login_cooldown
    ) as session:
        for i in range(400):
            source.path.write_text(f"wrong-{i}\n", encoding="utf-8")
            clock.advance(7.0 if i % 3 else 0.5)
            if i % 10 == 0:
                outcomes = await asyncio.gather(
                    *(session.call(QUERY, BODY) for _ in range(5)), return_exceptions=True
                )
                assert all(isinstance(o, PbxAuthError) for o in outcomes)
            else:
                with pytest.raises(PbxAuthError):
                    await session.call(QUERY, BODY)
    assert pbx.count("login") == len(pbx.failed_login_times) == HARD_STOP_FAILURES


async def test_session_unchanged_wrong_credentials_fail_twice_ever() -> None:
    """With a one-second cool-down and unchanged credentials, two failures, then none."""
    clock = FakeClock()
    pbx = FakePbx(password_md5=WRONG_MD5, clock=clock)
    async with pbx_session(pbx.transport(), clock=clock, login_cooldown=1.0) as session:
        for _ in range(1000):
            clock.advance(2.0)
            with pytest.raises(PbxAuthError) as info:
                await session.call(QUERY, BODY)
            assert "PBX" in info.value.message
    assert len(pbx.failed_login_times) == MAX_UNCHANGED_FAILURES


async def test_session_refusal_error_says_what_to_fix() -> None:
    """Once the same credentials failed twice, callers are told why and what to do."""
    clock = FakeClock()
    pbx = FakePbx(password_md5=WRONG_MD5, clock=clock)
    async with pbx_session(pbx.transport(), clock=clock, login_cooldown=1.0) as session:
        for _ in range(3):
            clock.advance(2.0)
            with pytest.raises(PbxAuthError) as info:
                await session.call(QUERY, BODY)
    assert pbx.count("login") == 2
    assert "credentials" in info.value.message
    assert "locks an address out" in info.value.message
    assert "password setting changes" in info.value.message


async def test_session_hard_stop_error_asks_for_a_restart(tmp_path: Path) -> None:
    """After four failures in a row even new credentials are not tried; a restart is asked."""
    source = password_file(tmp_path, "wrong-0")
    pbx = FakePbx()
    assert source.path is not None
    async with pbx_session(pbx.transport(), password=source) as session:
        for i in range(1, HARD_STOP_FAILURES + 2):
            with pytest.raises(PbxAuthError) as info:
                await session.call(QUERY, BODY)
            source.path.write_text(f"wrong-{i}", encoding="utf-8")
    assert pbx.count("login") == HARD_STOP_FAILURES
    assert "restart the gateway" in info.value.message


async def test_session_odd_login_errno_counts_as_a_failed_attempt() -> None:
    """A login Failed with an errno other than 20002/20003 is a failed attempt with a cool-down."""
    clock = FakeClock()
    pbx = FakePbx(clock=clock)
    pbx.queue("login", failed("10004"), failed("10004"), failed("10004"))
    async with pbx_session(pbx.transport(), clock=clock) as session:
        for _ in range(5):
            with pytest.raises(PbxApiError):
                await session.call(QUERY, BODY)
        assert pbx.count("login") == 1
        clock.advance(601)
        with pytest.raises(PbxApiError):
            await session.call(QUERY, BODY)
    assert pbx.count("login") == 2


# --- lockout -------------------------------------------------------------------------------


async def test_session_locked_out_is_reported_and_backs_off(tmp_path: Path) -> None:
    """20002: PbxLockedOutError saying "locked out"; no login during the back-off, even with new
    credentials; one attempt after it."""
    clock = FakeClock()
    source = password_file(tmp_path, PASSWORD)
    pbx = FakePbx(locked_out=True)
    assert source.path is not None
    async with pbx_session(
        pbx.transport(), password=source, clock=clock, lockout_backoff=600
    ) as session:
        outcomes = await asyncio.gather(
            *(session.call(QUERY, BODY) for _ in range(20)), return_exceptions=True
        )
        source.path.write_text("rotated", encoding="utf-8")
        clock.advance(599)
        with pytest.raises(PbxLockedOutError) as info:
            await session.call(QUERY, BODY)
        assert pbx.count("login") == 1
        assert isinstance(session.blocked_reason, PbxLockedOutError)
        pbx.locked_out = False
        source.path.write_text(PASSWORD, encoding="utf-8")
        clock.advance(1)
        assert (await session.call(QUERY, BODY))["status"] == "Success"
    assert pbx.count("login") == 2
    for error in [*outcomes, info.value]:
        assert isinstance(error, PbxLockedOutError)
        assert "locked out" in error.message
        assert error.extensions["code"] == "PBX_LOCKED_OUT"


# --- heartbeat and logout ------------------------------------------------------------------


async def test_session_heartbeat_sends_token() -> None:
    """heartbeat() posts to heartbeat with the current token."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        await session.heartbeat()
        assert session.has_token
    beats = [s for s in pbx.seen if s.endpoint == "heartbeat"]
    assert len(beats) == 1
    assert beats[0].token == pbx.issued[0]
    assert beats[0].method == "POST"


async def test_session_heartbeat_without_token_sends_nothing() -> None:
    """With no token there is nothing to keep alive: no request, no login."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.heartbeat()
    assert pbx.seen == []


async def test_session_heartbeat_token_error_forgets_token() -> None:
    """A heartbeat answered with a token error forgets the token; the next call logs in."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        pbx.expire_tokens()
        await session.heartbeat()
        assert not session.has_token
        assert pbx.count("login") == 1
        await session.call(QUERY, BODY)
    assert pbx.count("login") == 2
    assert pbx.count(QUERY) == 2  # no wasted request with the dead token


async def test_session_heartbeat_other_failure_keeps_token_and_does_not_raise() -> None:
    """A heartbeat failing for another reason is logged, not raised; the token is kept."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        pbx.queue("heartbeat", failed("30003"))
        await session.heartbeat()
        assert session.has_token


async def test_session_close_logs_out_with_token() -> None:
    """close() logs out with the current token and forgets it."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        await session.close()
        assert not session.has_token
        assert pbx.tokens == set()
    logouts = [s for s in pbx.seen if s.endpoint == "logout"]
    assert len(logouts) == 1  # the fixture's second close() finds no token
    assert logouts[0].token == pbx.issued[0]


async def test_session_close_without_token_sends_nothing() -> None:
    """Closing a session that never logged in calls nothing."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        await session.close()
    assert pbx.seen == []


async def test_session_close_survives_failed_logout() -> None:
    """A logout that fails is logged, not raised."""
    pbx = FakePbx()
    pbx.queue("logout", failed("30003"))
    async with pbx_session(pbx.transport()) as session:
        await session.call(QUERY, BODY)
        await session.close()
    assert pbx.count("logout") == 1


async def test_session_start_runs_heartbeats_and_close_stops_them() -> None:
    """start() heartbeats on the interval with the token; close() stops the task, then logs out."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport(), heartbeat_interval=0.01) as session:
        await session.call(QUERY, BODY)
        before = asyncio.all_tasks()
        session.start()
        session.start()  # idempotent: still one timer
        timers = asyncio.all_tasks() - before
        assert len(timers) == 1
        await eventually(lambda: pbx.count("heartbeat") >= 3)
        await session.close()
        assert all(task.done() for task in timers)
        beats_at_close = pbx.count("heartbeat")
        await asyncio.sleep(0)
    assert pbx.count("heartbeat") == beats_at_close
    assert {s.token for s in pbx.seen if s.endpoint == "heartbeat"} == {pbx.issued[0]}
    assert pbx.seen[-1].endpoint == "logout"
    assert pbx.count("logout") == 1


async def test_session_errors_are_pbx_errors() -> None:
    """Everything a session call raises on PBX trouble is a PbxError (GraphQL-mappable)."""
    pbx = FakePbx(password_md5=WRONG_MD5)
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxError):
            await session.call(QUERY, BODY)
    assert isinstance(session, PbxSession)
