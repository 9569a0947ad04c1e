"""Every error the gateway raises, in one tree.

::

    GatewayError                    code               meaning
    ├── ConfigError                 -                  bad settings; start-up stops with one line
    ├── BadInputError               BAD_USER_INPUT     the caller asked for something invalid
    │   └── InvalidFieldsError                         input fields break their rules (each named)
    ├── ForbiddenError              FORBIDDEN          the caller lacks the scope for that field
    ├── RateLimitedError            RATE_LIMITED       the caller's PBX budget is spent for now
    └── PbxError                    (per subclass)     anything about the PBX; names the endpoint
        ├── PbxUnavailableError     PBX_UNAVAILABLE    no usable answer right now (may pass)
        │   ├── PbxTimeoutError                        connect or read timed out
        │   ├── PbxConnectionError                     refused, reset, DNS, TLS
        │   ├── PbxProtocolError                       non-200, non-JSON, truncated, wrong shape
        │   ├── PbxCircuitOpenError                    recent calls failed: not calling for now
        │   ├── PbxTransientError                      errno 20010 / 30001 / 30003 (not on login)
        │   └── SharedSessionUnreadableError           the fleet's token is sealed with another
        │                                              key: this replica does not log in
        ├── PbxBusyError            PBX_BUSY           too many calls waiting for the PBX
        ├── PbxAuthError            PBX_AUTH_FAILED    20003, or any Failed login but 20002
        ├── PbxLockedOutError       PBX_LOCKED_OUT     errno 20002: our address is locked out
        └── PbxApiError             PBX_ERROR          any other errno (carries it, and the
            │                                          PBX's sanitized errordata hint)
            ├── PbxTokenError                          20004 / 20005 / 20006 (the session
            │                                          renews the token; callers rarely see it)
            ├── PbxFeatureUnavailableError             10003 on an endpoint only some firmware
            │                   FEATURE_UNAVAILABLE    has (live data, moderator controls): see
            │                                          the doctor
            └── PbxRateLimitedError PBX_RATE_LIMITED   10025: configuration applied too often
                                                       (a change; carries a retryAfter hint)

Messages say what happened and what to do. They carry the errno, its meaning and the
endpoint, never the token, the password or its MD5: the PBX client builds every message
from its own strings, not from upstream text. A message reaches GraphQL clients, so the
PBX's address and hints meant for the operator (which setting to check) go in a
:class:`PbxError`'s ``hint`` instead, which only the log shows (:attr:`PbxError.log_line`).
The one upstream text passed on, the PBX's ``errordata`` hint, goes to
``extensions.errordata`` sanitized (``gateway.pbx.errordata``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from gateway.error_code import ErrorCode


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    serve_stale: ClassVar[bool] = False
    """Whether the last known data may be served instead (the PBX could not answer)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, Any]:
        """What goes into a GraphQL error's ``extensions`` (graphql-core reads this)."""
        return {"code": self.code}


class ConfigError(GatewayError):
    """A setting is missing or malformed; the message names the variable."""

    code = ErrorCode.CONFIG_ERROR


class BadInputError(GatewayError):
    """The caller's input is invalid; nothing was sent to the PBX."""

    code = ErrorCode.BAD_USER_INPUT


class InvalidFieldsError(BadInputError):
    """Input fields break their rules; ``violations`` pairs each field (by its schema name)
    with the rule it breaks, all of them at once. Messages never quote a PIN."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {rule}" for field, rule in violations))
        self.violations = tuple(violations)

    @property
    def extensions(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "field": self.violations[0][0] if self.violations else None,
            "violations": [{"field": field, "rule": rule} for field, rule in self.violations],
        }


class ForbiddenError(GatewayError):
    """The caller is authenticated but lacks the scope this field or operation needs."""

    code = ErrorCode.FORBIDDEN


def retry_seconds(wait: float) -> int:
    """A wait as the whole seconds a client is told (message, ``retryAfter``, ``Retry-After``):
    rounded up and at least 1, so a message never says "retry in 0 s"."""
    return max(1, math.ceil(wait))


class RateLimitedError(GatewayError):
    """The caller used up its budget of PBX fetches; nothing was sent to the PBX."""

    code = ErrorCode.RATE_LIMITED
    serve_stale = True  # a room we already know costs the PBX nothing

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_seconds(retry_after)

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, "retryAfter": self.retry_after}


class PbxError(GatewayError):
    """Something about the PBX went wrong while calling ``endpoint``.

    ``hint`` is for the operator only (the PBX's URL, the setting to check): it is logged,
    never sent to a client.
    """

    code = ErrorCode.PBX_ERROR

    def __init__(self, message: str, *, endpoint: str, hint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.hint = hint

    @property
    def log_line(self) -> str:
        """The message with the operator's hint, for the log."""
        return f"{self.message}; {self.hint}" if self.hint else self.message


class PbxUnavailableError(PbxError):
    """The PBX gave no usable answer; trying again later may work."""

    code = ErrorCode.PBX_UNAVAILABLE
    serve_stale = True


class PbxTimeoutError(PbxUnavailableError):
    """The PBX did not answer in time.

    ``reached_pbx`` is False when the connection was never made: only then is the PBX
    known not to be working on the request still.
    """

    def __init__(
        self, message: str, *, endpoint: str, reached_pbx: bool = True, hint: str = ""
    ) -> None:
        super().__init__(message, endpoint=endpoint, hint=hint)
        self.reached_pbx = reached_pbx


class PbxConnectionError(PbxUnavailableError):
    """The connection to the PBX could not be made or broke."""


class PbxProtocolError(PbxUnavailableError):
    """The PBX (or something in between) answered with something that is not its API."""


class PbxCircuitOpenError(PbxUnavailableError):
    """Recent calls failed; the breaker keeps the gateway off the PBX for a while."""


class SharedSessionUnreadableError(PbxUnavailableError):
    """The fleet's PBX token in Redis cannot be decrypted with this replica's key.

    Logging in anyway would end the token the other replicas use (on a PBX where a new
    login ends older tokens) and they would log in again in turn; so this replica makes no
    PBX call and reports not ready until the keys agree.
    """


class PbxBusyError(PbxError):
    """The PBX's request slots and wait queue are full; the call was not queued."""

    code = ErrorCode.PBX_BUSY
    serve_stale = True


class PbxApiError(PbxError):
    """The PBX answered ``Failed`` with an ``errno``."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        errno: str | None,
        meaning: str,
        hint: str = "",
        errordata: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, hint=hint)
        self.errno = errno
        # Given by the PBX client, which knows the errno table (gateway.pbx.errnos): the
        # error tree sits below every package and looks nothing up.
        self.meaning = meaning
        self.errordata = errordata
        """The PBX's own hint (``errordata``), already sanitized by the PBX client."""

    @property
    def extensions(self) -> dict[str, Any]:
        extensions: dict[str, Any] = {"code": self.code, "errno": self.errno}
        if self.errordata is not None:
            extensions["errordata"] = self.errordata
        return extensions


class PbxTransientError(PbxApiError, PbxUnavailableError):
    """An errno that means the PBX is struggling right now (20010, 30001, 30003)."""

    code = ErrorCode.PBX_UNAVAILABLE


class PbxTokenError(PbxApiError):
    """The token was blank, unknown or timed out (20004 / 20005 / 20006)."""

    serve_stale = True


class PbxAuthError(PbxApiError):
    """The PBX rejected the gateway's username or password: errno 20003, or any other
    ``Failed`` answer to a login but the lockout (some firmware answers 30003)."""

    code = ErrorCode.PBX_AUTH_FAILED
    serve_stale = True


class PbxLockedOutError(PbxApiError):
    """The PBX has locked the gateway's address out after failed logins (20002)."""

    code = ErrorCode.PBX_LOCKED_OUT
    serve_stale = True


class PbxFeatureUnavailableError(PbxApiError):
    """The firmware lacks an endpoint (10003: ``conference/query_in_session``, a member
    control): nothing was done.

    Not the PBX failing: that feature is absent on this device; ``pbx-gateway doctor`` says
    which ones it has. Never served stale and never retried: it will not change until the
    firmware does.
    """

    code = ErrorCode.FEATURE_UNAVAILABLE


class PbxRateLimitedError(PbxApiError):
    """The PBX refused a change because configuration was applied too often (10025).

    Nothing was applied; the same change may be sent again after ``retry_after`` seconds.
    """

    code = ErrorCode.PBX_RATE_LIMITED

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        errno: str | None,
        meaning: str,
        retry_after: float,
        errordata: str | None = None,
    ) -> None:
        super().__init__(
            message, endpoint=endpoint, errno=errno, meaning=meaning, errordata=errordata
        )
        self.retry_after = retry_seconds(retry_after)

    @property
    def extensions(self) -> dict[str, Any]:
        return {**super().extensions, "retryAfter": self.retry_after}
