"""The PBX's login lockout: too many failed logins in a row lock the caller's address.

pbx-api.md: five failed logins lock the IP for ten minutes, and until then even the right
password answers 20002. A success resets the count. Threshold and duration come from the
config so tests can use tiny values; times come from the state's clock.
"""

from __future__ import annotations


class LoginLockout:
    """Consecutive failures and lock deadlines per client address."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def is_locked(self, address: str, now: float) -> bool:
        """Whether ``address`` is locked now; an elapsed lock is lifted with its count."""
        until = self._locked_until.get(address)
        if until is None:
            return False
        if now < until:
            return True
        del self._locked_until[address]
        self._failures.pop(address, None)
        return False

    def record_failure(self, address: str, now: float, threshold: int, seconds: float) -> bool:
        """Count a failed login; True when this one locks the address."""
        failures = self._failures.get(address, 0) + 1
        self._failures[address] = failures
        if failures >= threshold:
            self._locked_until[address] = now + seconds
            return True
        return False

    def record_success(self, address: str) -> None:
        """A good login: the count starts over."""
        self._failures.pop(address, None)

    def failures(self, address: str) -> int:
        """Consecutive failed logins from ``address`` so far."""
        return self._failures.get(address, 0)

    def locked_addresses(self, now: float) -> list[str]:
        """Addresses locked right now."""
        return sorted(
            address for address in list(self._locked_until) if self.is_locked(address, now)
        )

    def unlock_all(self) -> None:
        """What the PBX admin does in the web UI: lift every lock and forget the counts."""
        self._failures.clear()
        self._locked_until.clear()
