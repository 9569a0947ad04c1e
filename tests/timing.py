"""Time in tests: a clock that moves only when told, and bounded waits for a condition.

The gateway's caches, breaker, session and limits take a ``clock`` (a callable returning
monotonic seconds), so tests move TTLs and cool-downs with :class:`FakeClock` instead of
sleeping. What does take real time (a background refresh, a server shutting down, another
process starting) is awaited with :func:`eventually` (in the test's event loop) or
:func:`wait_until` (blocking, for subprocesses): both poll, return as soon as the condition
holds, and fail with ``what`` once ``seconds`` have passed, so only a hang reaches the bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx


class FakeClock:
    """A monotonic clock that moves only when told to.

    It starts well away from zero, so a timestamp the code under test initialises to 0.0
    ("never") already lies far in the past.
    """

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(
    condition: Callable[..., object],
    *,
    seconds: float = 10.0,
    interval: float = 0.005,
    what: str = "the condition",
) -> None:
    """Let the loop run until ``condition()`` is true; fail once ``seconds`` have passed."""
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= give_up:
            raise AssertionError(f"{what} did not hold within {seconds} s")
        await asyncio.sleep(interval)


def wait_until(
    condition: Callable[..., object], *, seconds: float = 15.0, what: str = "the condition"
) -> None:
    """Block until ``condition()`` is true, counting a connection error as not yet; bounded."""
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")
