"""The fleet's token source: one PBX token for every replica, through :class:`SessionShare`.

The session's other token source, :class:`~gateway.pbx.token_source.LocalTokens`, logs in
for itself; this one first takes the fleet's token, logs in only under the fleet-wide
login lock (one replica at a time), shares the failed-login guard's verdict per credential,
keeps the token alive in turns, and never logs the fleet's token out when a replica stops.
"""

from __future__ import annotations

import time

from gateway.errors import PbxUnavailableError, SharedSessionUnreadableError
from gateway.fleet.session_share import SessionShare
from gateway.pbx.token_source import Logins
from gateway.secrets import Secret


class SharedTokens:
    """A :class:`~gateway.pbx.token_source.TokenSource` backed by the fleet's Redis."""

    def __init__(self, share: SessionShare) -> None:
        self._share = share
        self._rejected_mark: str | None = None  # the fleet's fingerprint of rejected credentials

    @property
    def outlives_session(self) -> bool:
        # The token is the fleet's: other replicas still use it (it idles out). With Redis
        # away this replica logged in for itself, and logs out as a lone gateway does.
        return self._share.available

    def admit(self, logins: Logins) -> None:
        return None  # obtain() asks first whether a token is shared, then checks the guard

    def credentials_changed(self, logins: Logins, current: Secret, rejected: Secret | None) -> bool:
        if self._rejected_mark is not None:
            return self._mark(logins.username, current) != self._rejected_mark
        return current != rejected

    async def obtain(self, logins: Logins) -> str:
        """The fleet's token if there is one, else one login (by one replica only)."""
        share = self._share
        for _ in range(3):  # bounded: a failed login elsewhere makes the guard decide
            # This replica's credentials' verdict first (readiness reports it even while the
            # fleet's token, another replica's login, serves this replica's queries).
            await self._absorb_guard(logins)
            token = await share.current()
            if token is not None:
                return token
            logins.check_allowed()  # our credentials may not be tried now: say so, no turn
            async with share.login_turn() as mine:
                if mine is None:  # Redis is down: this replica logs in for itself
                    return await logins.log_in()
                if mine:
                    token = await share.current()  # someone may have finished just before
                    if token is not None:
                        return token
                    await self._absorb_guard(logins)
                    logins.check_allowed()
                    try:
                        token = await logins.log_in()
                    finally:
                        await self._share_guard(logins)
                    await share.publish(token)
                    return token
            token = await share.wait_for_token(share.login_lock_seconds)
            if token is not None:
                return token
        raise PbxUnavailableError(
            "no PBX session could be shared from the other replicas; try again shortly",
            endpoint="login",
        )

    async def heartbeat_token(self, held: str | None, interval: float) -> str | None:
        try:
            shared = await self._share.current()
        except SharedSessionUnreadableError:
            return None  # another key's token: leave the turn to a replica that can read it
        if not await self._share.heartbeat_turn(interval):
            return None  # another replica keeps the fleet's token alive this time
        return shared or held

    async def kept_alive(self) -> None:
        await self._share.touch()

    async def retire(self, token: str) -> None:
        await self._share.retire(token)  # once for the fleet: a newer token stays

    def _mark(self, username: str, md5: Secret) -> str:
        return self._share.credential_mark(username, md5.reveal())

    async def _absorb_guard(self, logins: Logins) -> None:
        """Take over the fleet's verdict on this replica's current credentials."""
        try:
            mark = self._mark(logins.username, logins.current_md5())
        except Exception:  # an unreadable password file: keep our own state
            return
        state = await self._share.load_guard(mark)
        if state is not None:
            logins.guard.absorb(state, time.time())
            rejected = state.get("rejected")
            if isinstance(rejected, str):
                self._rejected_mark = rejected

    async def _share_guard(self, logins: Logins) -> None:
        """Share the verdict on the credentials of the login just tried, under their mark."""
        if logins.tried_md5 is None:
            return
        mark = self._mark(logins.username, logins.tried_md5)
        guard = logins.guard
        state = guard.export(time.time())
        if guard.consecutive_failures and guard.rejection is not None:
            self._rejected_mark = mark
            state["rejected"] = mark
        await self._share.save_guard(mark, state)
