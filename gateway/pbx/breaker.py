"""A circuit breaker in front of the PBX.

When the PBX stops answering (reboot, unplugged, overloaded), piling more requests onto it
only makes it worse and makes every client wait for a timeout. After ``threshold``
consecutive failed calls the breaker *opens*: calls fail at once for ``cooldown`` seconds
(callers serve stale data instead). Then it lets exactly one trial call through
(*half-open*); its success closes the breaker, its failure opens it again.

Only "no usable answer" failures count (:class:`~gateway.errors.PbxUnavailableError`);
any decoded answer, even ``Failed`` with an errno, proves the device is there.

Every transition is logged once (open with the failure count and cool-down, half-open,
closed), so an operator can tell from the log when the gateway stopped calling the PBX.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from gateway.errors import PbxCircuitOpenError, retry_seconds

logger = logging.getLogger(__name__)


class CircuitState(enum.Enum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures and refuses calls while the PBX is presumed down."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.opened_count = 0

    @property
    def state(self) -> CircuitState:
        """The current state, as readiness and metrics report it."""
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self._cooldown:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def before_call(self, endpoint: str) -> None:
        """Raise PbxCircuitOpenError unless this call may go to the PBX."""
        opened_at = self._opened_at
        if opened_at is None:
            return
        retry_in = self._cooldown - (self._clock() - opened_at)
        if retry_in <= 0 and not self._trial_running:
            self._trial_running = True  # this call is the one trial
            logger.info(
                "PBX circuit breaker half-open: letting one trial call (%s) through", endpoint
            )
            return
        raise PbxCircuitOpenError(
            f"the PBX failed {self._threshold} calls in a row, so the gateway is not calling "
            f"it for now (next try in {retry_seconds(retry_in)} s); check that the PBX is up and "
            "reachable",
            endpoint=endpoint,
        )

    def succeeded(self) -> None:
        """A call got a decoded answer: the device is there."""
        if self._opened_at is not None:
            logger.warning("PBX circuit breaker closed: the PBX answered again")
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failed(self) -> None:
        """A call got no usable answer."""
        self._failures += 1
        if self._trial_running or self._failures >= self._threshold:
            if self._opened_at is None or self._trial_running:
                self.opened_count += 1
                logger.warning(
                    "PBX circuit breaker open after %d failed calls in a row%s: not calling "
                    "the PBX for %.0f s",
                    self._failures,
                    " (the trial call failed)" if self._trial_running else "",
                    self._cooldown,
                )
            self._opened_at = self._clock()
            self._trial_running = False

    def abandoned(self) -> None:
        """A call ended without an answer either way (cancelled): free the trial slot."""
        self._trial_running = False
