"""When the session may try to log in: the rules that keep the PBX from locking us out.

The PBX locks an address out after five failed logins (``pbx-api.md``, Login), and
nothing says it ever forgets a failure, so a gateway that retried bad credentials once
per cool-down forever would lock itself (and every integration sharing its address) out
after the fifth try. The rules, counting *consecutive* failed logins (a success resets):

1. after a rejection, no attempt for ``cooldown`` seconds unless the credentials change
   (a rotated password file, re-read before each decision);
2. after ``MAX_UNCHANGED_FAILURES`` in a row, no attempt with the same credentials ever
   again: only a change of credentials allows one more;
3. after ``HARD_STOP_FAILURES`` in a row, no attempt at all until the gateway restarts,
   so the gateway alone can never make the fifth;
4. after a lockout (20002), no attempt for ``lockout_backoff`` seconds.

Meanwhile callers get the reason at once, with no PBX call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from gateway.error_code import ErrorCode
from gateway.errors import PbxApiError, PbxAuthError, PbxLockedOutError
from gateway.pbx.errnos import errno_meaning

MAX_UNCHANGED_FAILURES: Final = 2
HARD_STOP_FAILURES: Final = 4


class LoginGuard:
    """Remembers failed logins and refuses attempts the rules above forbid."""

    def __init__(
        self,
        *,
        cooldown: float,
        lockout_backoff: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown = cooldown
        self._lockout_backoff = lockout_backoff
        self._clock = clock
        self.consecutive_failures = 0
        self._rejection: PbxApiError | None = None
        self._retry_at = 0.0
        self._lockout: PbxLockedOutError | None = None
        self._locked_until = 0.0

    @property
    def rejection(self) -> PbxApiError | None:
        """The PBX's refusal of the last credentials tried, until a login succeeds."""
        return self._rejection

    @property
    def reason(self) -> PbxApiError | None:
        """Why logins are refused right now with unchanged credentials, if they are."""
        now = self._clock()
        if self._lockout is not None and now < self._locked_until:
            return self._lockout
        if self.consecutive_failures >= MAX_UNCHANGED_FAILURES or (
            self._rejection is not None and now < self._retry_at
        ):
            return self._rejection
        return None

    def check(self, credentials_changed: Callable[[], bool]) -> None:
        """Raise the reason a login may not be tried now; return when it may."""
        now = self._clock()
        if self._lockout is not None and now < self._locked_until:
            raise _fresh(self._lockout)
        if self.consecutive_failures >= HARD_STOP_FAILURES:
            raise PbxAuthError(
                f"{self.consecutive_failures} logins in a row failed, so the gateway makes no "
                "more attempts: one more could get its address locked out by the PBX. Fix "
                "PBX_USERNAME and the password setting, then restart the gateway",
                endpoint="login",
                errno=None,
                meaning=errno_meaning(None),
            )
        if self._rejection is None or credentials_changed():
            return
        if self.consecutive_failures >= MAX_UNCHANGED_FAILURES:
            raise PbxAuthError(
                f"{self._rejection.message}. The same credentials failed "
                f"{self.consecutive_failures} times in a row, so the gateway will not try them "
                "again (the PBX locks an address out after five failures); it tries once more "
                "when the password setting changes, or after a restart",
                endpoint="login",
                errno=self._rejection.errno,
                meaning=self._rejection.meaning,
            )
        if now < self._retry_at:
            raise _fresh(self._rejection)

    def rejected(self, error: PbxApiError) -> None:
        """The PBX refused the login (bad credentials, or an errno we cannot read as more)."""
        self.consecutive_failures += 1
        self._rejection = error
        self._retry_at = self._clock() + self._cooldown

    def locked_out(self, error: PbxLockedOutError) -> None:
        """The PBX reported our address locked out."""
        self._lockout = error
        self._locked_until = self._clock() + self._lockout_backoff

    def succeeded(self) -> None:
        """A login worked: every count starts again."""
        self.consecutive_failures = 0
        self._rejection = None
        self._lockout = None

    def export(self, wall: float) -> dict[str, Any]:
        """The state as plain data with wall-clock deadlines, to share with other replicas."""
        now = self._clock()
        return {
            "failures": self.consecutive_failures,
            "rejection": _describe(self._rejection),
            "retry_at": wall + (self._retry_at - now),
            "lockout": _describe(self._lockout),
            "locked_until": wall + (self._locked_until - now),
        }

    def absorb(self, state: dict[str, Any], wall: float) -> None:
        """Take over state another replica exported (see :meth:`export`); a part missing
        from ``state`` (the failures, or the lockout) leaves ours as it is."""
        now = self._clock()
        try:
            failures = int(state.get("failures", 0))
            retry_at = now + (float(state.get("retry_at", 0)) - wall)
            locked_until = now + (float(state.get("locked_until", 0)) - wall)
        except (TypeError, ValueError):
            return  # unreadable shared state: keep ours
        if "failures" in state:
            self.consecutive_failures = failures
            self._retry_at = retry_at
            self._rejection = _rebuild(state.get("rejection"))
        if "locked_until" in state:
            self._locked_until = locked_until
            lockout = _rebuild(state.get("lockout"))
            self._lockout = lockout if isinstance(lockout, PbxLockedOutError) else None


def _describe(error: PbxApiError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"code": error.code, "message": error.message, "errno": error.errno}


def _rebuild(data: object) -> PbxApiError | None:
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return None
    errno = data.get("errno") if isinstance(data.get("errno"), str) else None
    kinds: dict[str, type[PbxApiError]] = {
        ErrorCode.PBX_AUTH_FAILED: PbxAuthError,
        ErrorCode.PBX_LOCKED_OUT: PbxLockedOutError,
    }
    kind = kinds.get(str(data.get("code")), PbxApiError)
    return kind(data["message"], endpoint="login", errno=errno, meaning=errno_meaning(errno))


def _fresh(error: PbxApiError) -> PbxApiError:
    # A new instance per raise: raising one object again and again grows its traceback.
    return type(error)(
        error.message, endpoint=error.endpoint, errno=error.errno, meaning=error.meaning
    )
