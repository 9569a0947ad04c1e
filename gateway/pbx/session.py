"""The token keeper: one careful login session with the PBX.

The PBX punishes mistakes (``pbx-api.md``, Login and Token lifetime): five failed logins
lock the gateway's address out, and tokens die after 30 idle minutes. So:

- there is at most one login in flight; concurrent callers wait for it (single-flight);
- a token error (20004 / 20005 / 20006) drops that token, logs in once and retries the
  request once, whoever else saw the same error at the same time;
- whether a login may be tried at all after failures is :class:`LoginGuard`'s decision
  (cool-down after a rejection, no retry of credentials that failed twice in a row, a
  hard stop before the PBX's fifth failure, a back-off after a lockout);
- a heartbeat keeps the token alive while the gateway is idle, and closing logs out;
- where the token comes from (a login of its own, or the fleet's shared token) is its
  :class:`~gateway.pbx.token_source.TokenSource`, picked once at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gateway.errors import (
    PbxApiError,
    PbxError,
    PbxLockedOutError,
    PbxProtocolError,
    PbxTokenError,
    PbxUnavailableError,
)
from gateway.pbx.client import JsonObject, PbxClient
from gateway.pbx.login_guard import LoginGuard
from gateway.pbx.token_source import LocalTokens, TokenSource
from gateway.secrets import Secret

logger = logging.getLogger(__name__)


class Password(Protocol):
    """The PBX password as the session reads it (``gateway.settings.PasswordSource``): its
    MD5 at each login, so a changed password file is picked up without a restart."""

    def current_md5(self) -> Secret: ...


class PbxSession:
    """Holds the PBX token and makes authenticated calls through a :class:`PbxClient`."""

    def __init__(
        self,
        client: PbxClient,
        *,
        username: str,
        password: Password,
        heartbeat_interval: float = 1200.0,
        login_cooldown: float = 600.0,
        lockout_backoff: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        tokens: TokenSource | None = None,
        login_extras: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        # Sent with every login: where the PBX pushes events (HTTP report method), if asked.
        self._login_extras = dict(login_extras or {})
        self._tokens: TokenSource = tokens if tokens is not None else LocalTokens()
        self._username = username
        self._password = password
        self._heartbeat_interval = heartbeat_interval
        self._lockout_backoff = lockout_backoff
        self._clock = clock
        self._token: str | None = None
        self._login_task: asyncio.Task[str] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._warm_up: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._guard = LoginGuard(
            cooldown=login_cooldown, lockout_backoff=lockout_backoff, clock=clock
        )
        self._rejected_md5: Secret | None = None
        self._tried_md5: Secret | None = None  # the password MD5 of the last login attempt
        self.logins = 0
        self.failed_logins = 0
        self.report_transport: str | None = None
        """How the PBX sends events (``TCP`` or ``HTTP``), from the last login's answer;
        None before a login of this session's own, or when the answer did not say."""

    @property
    def has_token(self) -> bool:
        """Whether the session currently holds a token (for readiness)."""
        return self._token is not None

    @property
    def blocked_reason(self) -> PbxError | None:
        """The error logins are refused with right now, if any (for readiness)."""
        return self._guard.reason

    @property
    def credentials_rejected(self) -> PbxError | None:
        """The PBX's refusal of this gateway's credentials, from the last time they were tried
        (by this replica or, in a fleet, one with the same credentials), until a login with
        them works; None when they were not refused or have changed since (for readiness)."""
        rejection = self._guard.rejection
        if rejection is None or self._credentials_changed():
            return None
        return rejection

    async def call(
        self, endpoint: str, body: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> JsonObject:
        """An authenticated call; on a token error, one new login and one retry.

        ``idempotent`` calls (queries) may also be retried once by the client when the
        connection was lost; see :meth:`PbxClient.call`.
        """
        token = await self._current_token()
        try:
            return await self._client.call(endpoint, body, token=token, idempotent=idempotent)
        except PbxTokenError:
            await self._forget(token)
            logger.info("PBX token no longer valid on %s; logging in again", endpoint)
        token = await self._current_token()
        try:
            return await self._client.call(endpoint, body, token=token, idempotent=idempotent)
        except PbxTokenError as exc:
            # A token fresh from a login refused at once: the PBX is not keeping sessions
            # (restarting, overloaded); no second re-login, report it as unavailable.
            await self._forget(token)
            raise PbxUnavailableError(
                f"the PBX refused a token it had just issued ({exc.meaning}); it may be "
                "restarting, try again shortly",
                endpoint=endpoint,
            ) from exc

    def start(self, *, login_now: bool = False) -> None:
        """Start the heartbeat timer and, with ``login_now``, a first login in the background
        (so readiness turns true before the first query). Call from the running loop."""
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeat_forever())
        if login_now and self._warm_up is None:
            self._warm_up = asyncio.create_task(self._log_in_quietly())

    @property
    def starting(self) -> bool:
        """Whether the start-up login loop is still running (retrying an unreachable PBX)."""
        return self._warm_up is not None and not self._warm_up.done()

    async def started(self) -> None:
        """Wait for the start-up login's first attempt, if one was asked for, to end."""
        if self._warm_up is not None:
            await self._first_attempt.wait()

    async def _log_in_quietly(self) -> None:
        """Log in at start-up; while the PBX is unreachable, keep trying with back-off, so
        a gateway started before its PBX becomes ready without waiting for a query (an
        unready pod gets none). A rejected login is not retried here: the guard decides."""
        delay = 1.0
        try:
            while True:
                try:
                    await self._current_token()
                    return
                except PbxUnavailableError as exc:
                    logger.warning("start-up login: %s; again in %.0f s", exc.message, delay)
                except PbxError as exc:  # readiness reports it; queries retry as allowed
                    logger.warning("start-up login failed: %s", exc.message)
                    return
                self._first_attempt.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        finally:
            self._first_attempt.set()

    async def close(self) -> None:
        """Stop the heartbeat and log out, so the PBX frees the token now."""
        if self._warm_up is not None:
            self._warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_up
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        if self._login_task is not None:  # a login under way would leave a token behind
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._login_task), timeout=5)
        token, self._token = self._token, None
        if self._tokens.outlives_session:
            return  # the token is the fleet's: other replicas still use it (it idles out)
        if token is not None:
            try:
                await self._client.call("logout", None, token=token, bypass_breaker=True)
            except PbxError as exc:
                logger.warning("PBX logout failed: %s", exc.message)

    async def heartbeat(self) -> None:
        """Reset the token's idle timer, or forget a token the PBX no longer knows."""
        token = await self._tokens.heartbeat_token(self._token, self._heartbeat_interval)
        if token is None:
            return
        try:
            # ipaddr: required by the S-Series v2 heartbeat page (pbx-api.md, "Heartbeat").
            body = {"ipaddr": self._client.heartbeat_address()}
            await self._client.call("heartbeat", body, token=token, idempotent=True)
            await self._tokens.kept_alive()
        except PbxTokenError:
            await self._forget(token)  # the next call logs in; no login needed to stay idle
        except PbxError as exc:
            # Not a dead token: the token may well still live (a refused heartbeat body, a
            # PBX hiccup); the next call finds out, and only a token errno costs a login.
            logger.warning("PBX heartbeat failed, token kept: %s", exc.message)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            await self.heartbeat()

    async def _forget(self, token: str) -> None:
        # Only the token that failed: a caller holding an old token must not drop a new one.
        if self._token == token:
            self._token = None
        await self._tokens.retire(token)  # a shared token: once for the fleet, a newer one stays

    async def _current_token(self) -> str:
        if self._token is not None:
            return self._token
        if self._login_task is None:
            self._tokens.admit(self)
            self._login_task = asyncio.create_task(self._obtain())
            self._login_task.add_done_callback(self._login_finished)
        # shield: a caller that gives up must not cancel the login others are waiting for.
        return await asyncio.shield(self._login_task)

    def _login_finished(self, task: asyncio.Task[str]) -> None:
        self._login_task = None
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter already got it

    # The report channel's logins (gateway.pbx.report_channel) share this session's guard:
    # the PBX counts both kinds toward one lockout, so the gateway counts them together.

    def report_login_refused(self, error: PbxApiError) -> None:
        """The report channel's login was refused: counted as a failed login."""
        self._guard.rejected(error)
        with contextlib.suppress(Exception):  # an unreadable file: the refusal still counts
            self._rejected_md5 = self._password.current_md5()
        self.failed_logins += 1
        logger.error(
            "%s; failed logins in a row: %d", error.message, self._guard.consecutive_failures
        )

    def report_login_locked(self, error: PbxLockedOutError) -> None:
        """The report channel's login found the address locked out."""
        self._guard.locked_out(error)
        self.failed_logins += 1
        logger.error("%s; no login attempts for %.0f s", error.message, self._lockout_backoff)

    def report_login_accepted(self) -> None:
        """The report channel logged in: the PBX has forgotten earlier failures."""
        self._guard.succeeded()

    # What a token source may use (gateway.pbx.token_source.Logins).

    @property
    def username(self) -> str:
        return self._username

    @property
    def guard(self) -> LoginGuard:
        return self._guard

    @property
    def tried_md5(self) -> Secret | None:
        return self._tried_md5

    def current_md5(self) -> Secret:
        return self._password.current_md5()

    def check_allowed(self) -> None:
        """Raise at once, with no PBX call, while logins are refused."""
        self._guard.check(self._credentials_changed)

    def _credentials_changed(self) -> bool:
        try:
            current = self._password.current_md5()
        except Exception:  # an unreadable file is not a change; the refusal stands
            return False
        return self._tokens.credentials_changed(self, current, self._rejected_md5)

    async def _obtain(self) -> str:
        """A token from the source (the fleet's, or one login of this session's own)."""
        token = await self._tokens.obtain(self)
        self._token = token
        return token

    async def log_in(self) -> str:
        """One login to the PBX, under the guard's eye; the token is kept."""
        md5 = self._password.current_md5()
        self._tried_md5 = md5
        body = {**self._login_extras, "username": self._username, "password": md5.reveal()}
        try:
            payload = await self._client.call("login", body)
        except PbxLockedOutError as exc:
            self._guard.locked_out(exc)
            self.failed_logins += 1
            logger.error("%s; no login attempts for %.0f s", exc.message, self._lockout_backoff)
            raise
        except PbxApiError as exc:
            # Any Failed login (20003, 30003, an errno never seen, none at all) counts as a
            # failed attempt: the PBX may well count it toward the lockout. Only a call that
            # got no PBX answer (PbxUnavailableError: timeout, refused, garbage) does not.
            self._guard.rejected(exc)
            self._rejected_md5 = md5
            self.failed_logins += 1
            logger.error(
                "%s; failed logins in a row: %d", exc.message, self._guard.consecutive_failures
            )
            raise
        token = payload.get("token")
        if not isinstance(token, str) or not token:
            raise PbxProtocolError("login answered Success without a token", endpoint="login")
        self._guard.succeeded()
        self._token = token
        self.logins += 1
        transport = payload.get("transport")
        self.report_transport = transport.upper() if isinstance(transport, str) else None
        logger.info("logged in to the PBX at %s as %s", self._client.base_url, self._username)
        return token
