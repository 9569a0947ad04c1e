"""A Redis pub/sub subscription that is known to be in place before it is used.

``SUBSCRIBE`` answers asynchronously: until Redis confirms it, a message published from
another connection may be missed. The lease (which must not miss a release announcement
between a try and the wait after it) and the bus (which asks for a resync only once it
will hear the answer) both wait for the confirmation, bounded, through :func:`subscribed`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from gateway.fleet.link import RedisLink

CONFIRM_SECONDS: Final = 5.0
"""How long Redis may take to confirm a subscription before it counts as unreachable."""


@contextlib.asynccontextmanager
async def subscribed(link: RedisLink, channel: str) -> AsyncIterator[Any]:
    """A pub/sub connection subscribed to ``channel``, confirmed; closed on exit.

    Raises :class:`TimeoutError` when Redis does not confirm in time, and Redis's own
    errors when it cannot be reached (callers retry after a pause).
    """
    async with link.client.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        give_up = time.monotonic() + CONFIRM_SECONDS
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Redis did not confirm the subscription to {channel}")
            message = await pubsub.get_message(timeout=left)
            if message is not None and message.get("type") == "subscribe":
                break
        yield pubsub
