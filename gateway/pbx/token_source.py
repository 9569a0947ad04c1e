"""Where the PBX session's token comes from: a strategy picked once, at construction.

A lone gateway logs in for itself (:class:`LocalTokens`, the default); replicas of one
fleet share one token through Redis (``gateway.fleet.shared_tokens.SharedTokens``, built
with the fleet). :class:`~gateway.pbx.session.PbxSession` asks its source and never asks
whether there is a fleet, and the PBX package imports nothing of the fleet's.
"""

from __future__ import annotations

from typing import Protocol

from gateway.pbx.login_guard import LoginGuard
from gateway.secrets import Secret


class Logins(Protocol):
    """What the session lends its token source: the credentials, the guard, one login."""

    @property
    def username(self) -> str: ...

    @property
    def guard(self) -> LoginGuard: ...

    @property
    def tried_md5(self) -> Secret | None:
        """The password MD5 of the last login attempt (None before the first)."""

    def current_md5(self) -> Secret:
        """The password's MD5 as configured now (it may change while running)."""

    def check_allowed(self) -> None:
        """Raise at once, with no PBX call, while logins are refused."""

    async def log_in(self) -> str:
        """One login to the PBX; the session keeps the token it returns."""


class TokenSource(Protocol):
    """Gets the session a token and keeps the source's side of its life in step."""

    @property
    def outlives_session(self) -> bool:
        """Whether the token belongs to others too, so closing must not log it out."""

    def admit(self, logins: Logins) -> None:
        """Raise at once, before a token is sought, when none may be sought now."""

    async def obtain(self, logins: Logins) -> str:
        """A token for the session (single-flight is the session's concern)."""

    def credentials_changed(self, logins: Logins, current: Secret, rejected: Secret | None) -> bool:
        """Whether ``current`` differs from the credentials last rejected (``rejected``
        being this session's own record of them)."""

    async def heartbeat_token(self, held: str | None, interval: float) -> str | None:
        """The token to keep alive now (``held`` is the session's), or None: none held,
        or another keeps it alive this time."""

    async def kept_alive(self) -> None:
        """A heartbeat with the token was accepted."""

    async def retire(self, token: str) -> None:
        """The PBX no longer knows ``token``."""


class LocalTokens:
    """This gateway logs in for itself; its token is its own."""

    outlives_session = False

    def admit(self, logins: Logins) -> None:
        logins.check_allowed()

    async def obtain(self, logins: Logins) -> str:
        return await logins.log_in()

    def credentials_changed(self, logins: Logins, current: Secret, rejected: Secret | None) -> bool:
        return current != rejected

    async def heartbeat_token(self, held: str | None, interval: float) -> str | None:
        return held

    async def kept_alive(self) -> None:
        return None

    async def retire(self, token: str) -> None:
        return None
