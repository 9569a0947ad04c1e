"""One PBX session for the whole fleet.

Why: if every replica logged in for itself the PBX would see N logins, and if a new login
ends older tokens (nobody has ruled it out, ``pbx-api.md``) replicas would keep logging
each other out. So the token lives in Redis, encrypted (Fernet, key from
``GATEWAY_REDIS_TOKEN_KEY``) so a Redis dump does not hand out PBX access, next to a
keyed fingerprint used to retire exactly that token. Logins happen under a fleet-wide
lock: one replica logs in, the others wait for and use its token; a token error retires
the token once (compare-and-delete), so the fleet re-logs in once. Heartbeats are sent
by whichever replica takes the heartbeat turn. The failed-login guard's state is shared
too, kept per credential (under a keyed fingerprint of username and password MD5, never
the secret): replicas with the same credentials share one verdict, so the fleet makes at
most one failed login per cool-down with them, and a success with other credentials (another
replica's) never clears the verdict on a rejected password. A lockout (20002) is the PBX's
verdict on an address, not a password, so it is shared fleet-wide.

A token this replica cannot decrypt means its key differs from the fleet's: it raises
:class:`~gateway.errors.SharedSessionUnreadableError` instead of logging in (which would
end the others' token), logs it once and shows in ``/readyz`` (:attr:`SessionShare.problem`)
until it reads the fleet's token again or there is none.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken

from gateway.errors import SharedSessionUnreadableError
from gateway.fleet.link import RedisLink, script
from gateway.secrets import Secret

logger = logging.getLogger(__name__)

UNREADABLE: Final = (
    "the fleet's PBX token in Redis cannot be decrypted with this replica's "
    "GATEWAY_REDIS_TOKEN_KEY: the replicas' keys differ; this replica will not log in to the "
    "PBX on its own (that would end the other replicas' session) until every replica has "
    "the same key"
)

TOKEN_SECONDS: Final = 25 * 60
"""How long Redis keeps a token nobody used: less than the PBX's 30 idle minutes."""

_DOWN: Final[bool | str | bytes | None] = "redis-down"
"""The fallback that tells "Redis did not answer" from SET NX's own None ("not set")."""

_RETIRE: Final = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SessionShare:
    """The fleet's token, login lock, heartbeat turn and guard state in Redis."""

    def __init__(self, link: RedisLink, key: Secret, *, login_lock_seconds: float = 20.0) -> None:
        self._link = link
        self._fernet = Fernet(key.reveal().encode())
        self._mac_key = hashlib.sha256(b"pbxgw-fingerprint:" + key.reveal().encode()).digest()
        self._token_key = link.key("session", "token")
        self._fingerprint_key = link.key("session", "token-id")
        self._lock_key = link.key("session", "login-lock")
        self._heartbeat_key = link.key("session", "heartbeat-turn")
        self._lockout_key = link.key("session", "lockout")
        self._lock_ms = int(login_lock_seconds * 1000)
        self.login_lock_seconds = login_lock_seconds
        self.problem: str | None = None
        """Why this replica cannot use the fleet's session (for readiness), if it cannot."""

    @property
    def available(self) -> bool:
        """Whether Redis answers now (if not, the session works alone)."""
        return self._link.up

    def fingerprint(self, secret: str) -> str:
        """A keyed, one-way fingerprint: identifies a token or password without revealing it."""
        return hmac.new(self._mac_key, secret.encode(), hashlib.sha256).hexdigest()[:32]

    async def current(self) -> str | None:
        """The fleet's token, or None (none yet, or Redis down).

        Raises SharedSessionUnreadableError when there is one this replica cannot decrypt.
        """
        blob = await self._link.run(lambda client: client.get(self._token_key), None)
        if not blob:
            self._readable()  # no token at all: this replica may log in for the fleet
            return None
        try:
            token = self._fernet.decrypt(blob).decode()
        except (InvalidToken, UnicodeDecodeError):
            if self.problem is None:
                logger.error("%s", UNREADABLE)
            self.problem = UNREADABLE
            raise SharedSessionUnreadableError(
                "this gateway replica cannot use the PBX session right now; try again shortly",
                endpoint="login",
                hint=UNREADABLE,
            ) from None
        self._readable()
        return token

    def _readable(self) -> None:
        if self.problem is not None:
            logger.warning("this replica can use the fleet's PBX session again")
            self.problem = None

    async def publish(self, token: str) -> None:
        """Make ``token`` the fleet's token."""
        blob = self._fernet.encrypt(token.encode())
        mark = self.fingerprint(token).encode()

        async def write(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(self._token_key, blob, ex=TOKEN_SECONDS)
                pipe.set(self._fingerprint_key, mark, ex=TOKEN_SECONDS)
                await pipe.execute()

        await self._link.run(write, None)

    async def touch(self) -> None:
        """The token was just used or kept alive: keep it in Redis as long again."""

        async def extend(client: Any) -> None:
            async with client.pipeline(transaction=False) as pipe:
                pipe.expire(self._token_key, TOKEN_SECONDS)
                pipe.expire(self._fingerprint_key, TOKEN_SECONDS)
                await pipe.execute()

        await self._link.run(extend, None)

    async def retire(self, token: str) -> None:
        """Remove ``token`` if it is still the fleet's (a newer one is left alone)."""
        keys = [self._token_key, self._fingerprint_key]
        await script(self._link, _RETIRE, keys, [self.fingerprint(token)], 0)

    @asynccontextmanager
    async def login_turn(self) -> AsyncIterator[bool | None]:
        """True: this replica may log in now; False: another one is; None: Redis is down."""
        owner = uuid.uuid4().hex
        won = await self._link.run(
            lambda client: client.set(self._lock_key, owner, nx=True, px=self._lock_ms), _DOWN
        )
        try:
            yield None if won == _DOWN else bool(won)
        finally:
            if won and won != _DOWN:
                await script(self._link, _RELEASE, [self._lock_key], [owner], 0)

    async def wait_for_token(self, seconds: float) -> str | None:
        """Poll for the token another replica is logging in for; None if none came."""
        give_up = time.monotonic() + seconds
        delay = 0.01
        while time.monotonic() < give_up:
            token = await self.current()
            if token is not None:
                return token
            locked = await self._link.run(lambda client: client.exists(self._lock_key), 0)
            if not locked:  # the other login ended without a token: it failed
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return None

    async def heartbeat_turn(self, interval: float) -> bool:
        """True for exactly one replica per ``interval`` (or for every one, Redis down)."""
        turn_ms = max(1, int(interval * 900))  # a little under the interval: never skip one
        won = await self._link.run(
            lambda client: client.set(self._heartbeat_key, b"1", nx=True, px=turn_ms), _DOWN
        )
        return won == _DOWN or bool(won)

    def credential_mark(self, username: str, password_md5: str) -> str:
        """The fingerprint that names one set of credentials in Redis (never the secret)."""
        return self.fingerprint(f"credentials:{username}\0{password_md5}")

    async def load_guard(self, mark: str) -> dict[str, Any] | None:
        """The fleet's failed-login guard state for the credentials ``mark`` names, with the
        fleet-wide lockout folded in; None when there is neither."""
        state = await self._load_json(self._link.key("session", "guard", mark))
        lockout = await self._load_json(self._lockout_key)
        if lockout is None:
            return state
        merged = dict(state or {})
        merged["lockout"] = lockout.get("lockout")
        merged["locked_until"] = lockout.get("locked_until", 0)
        return merged

    async def save_guard(self, mark: str, state: dict[str, Any]) -> None:
        """Share the guard state of the credentials ``mark`` names (kept a day: failures are
        never forgotten sooner), and the lockout, if any, for every replica."""
        raw = json.dumps(state)
        guard_key = self._link.key("session", "guard", mark)
        await self._link.run(lambda client: client.set(guard_key, raw, ex=86_400), None)
        lockout = state.get("lockout")
        seconds = float(state.get("locked_until", 0) or 0) - time.time()
        if lockout is not None and seconds > 0:
            shared = json.dumps({"lockout": lockout, "locked_until": state["locked_until"]})
            ttl = max(1, int(seconds) + 1)
            await self._link.run(lambda client: client.set(self._lockout_key, shared, ex=ttl), None)
        elif not state.get("failures"):  # a login worked: the address is not locked
            await self._link.run(lambda client: client.delete(self._lockout_key), None)

    async def _load_json(self, key: str) -> dict[str, Any] | None:
        raw = await self._link.run(lambda client: client.get(key), None)
        if not raw:
            return None
        try:
            state = json.loads(raw)
        except ValueError:
            return None
        return state if isinstance(state, dict) else None
