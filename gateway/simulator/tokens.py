"""Login tokens: issued, checked (which extends them), ended, and expired when idle too long.

Times come from the caller (the state's clock), so tests can move time instead of sleeping.
A token that was found expired stays known as expired: the PBX may answer 20006 for it rather
than 20004 (pbx-api.md, "Token lifetime").
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass


class TokenCheck(enum.Enum):
    """The outcome of presenting a token."""

    OK = "ok"
    BLANK = "blank"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


@dataclass
class _Token:
    username: str
    last_used: float
    expired: bool = False


class TokenStore:
    """All tokens ever issued and not ended, with their last use."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}

    def issue(self, username: str, now: float) -> str:
        """A new token for ``username``: 32 lower-case hex characters, like the PBX's."""
        token = secrets.token_hex(16)
        self._tokens[token] = _Token(username, now)
        return token

    def check(self, token: str, now: float, ttl: float) -> TokenCheck:
        """Whether ``token`` is usable; a usable token's idle clock restarts (any call counts)."""
        if not token.strip():
            return TokenCheck.BLANK
        entry = self._tokens.get(token)
        if entry is None:
            return TokenCheck.UNKNOWN
        if entry.expired or now - entry.last_used > ttl:
            entry.expired = True
            return TokenCheck.EXPIRED
        entry.last_used = now
        return TokenCheck.OK

    def is_live(self, token: str, now: float, ttl: float) -> bool:
        """Whether ``token`` would be accepted, without counting as a use (for HTTP push)."""
        entry = self._tokens.get(token)
        return entry is not None and not entry.expired and now - entry.last_used <= ttl

    def end(self, token: str) -> None:
        """Forget a token (logout): it becomes unknown, 20004."""
        self._tokens.pop(token, None)

    def end_user(self, username: str) -> int:
        """Forget every token of ``username``; how many there were."""
        doomed = [token for token, entry in self._tokens.items() if entry.username == username]
        for token in doomed:
            del self._tokens[token]
        return len(doomed)

    def expire_all(self) -> int:
        """Time out every token now (they answer as expired); how many were live."""
        count = 0
        for entry in self._tokens.values():
            count += not entry.expired
            entry.expired = True
        return count

    def clear(self) -> None:
        """Forget every token."""
        self._tokens.clear()

    def live_count(self, now: float, ttl: float) -> int:
        """Tokens that would still be accepted."""
        return sum(
            1
            for entry in self._tokens.values()
            if not entry.expired and now - entry.last_used <= ttl
        )
