"""Stopping a cancelled task that a Redis call let run on.

A task cancelled while it waits on Redis does not always see the ``CancelledError``: on
Python 3.11 ``asyncio.wait_for`` (which redis-py wraps around each write) returns the
result instead when the write finishes in the same turn as the cancellation, and redis-py
may report an interrupted command as its own connection error, which
:class:`~gateway.fleet.link.RedisLink` turns into a fallback value. The request to cancel
is still recorded (``Task.cancelling()``), so every loop that calls Redis forever (the
live lease and bus, the fleet cache's invalidation listener, the link's rejoin probe)
checks it at every turn: otherwise a cancelled task would run on and the app's shutdown
would wait for it forever.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if this task was asked to stop and a call
    swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
