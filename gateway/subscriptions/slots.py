"""How many subscriptions each caller holds on this process, over every transport.

One WebSocket is bounded by ``GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION``; a caller
could still open many connections, or many multipart streams, so the caller (its
identity's name: the key, the token's subject, or the anonymous address) has a budget of
its own, ``GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_IDENTITY``. A slot is taken before the
subscription starts and given back, once, when it ends however it ends.
"""

from __future__ import annotations

from collections import Counter


class Slot:
    """One held subscription; :meth:`release` gives it back (idempotent)."""

    __slots__ = ("_name", "_slots")

    def __init__(self, slots: SubscriptionSlots, name: str) -> None:
        self._slots: SubscriptionSlots | None = slots
        self._name = name

    def release(self) -> None:
        """Give the slot back; a second call does nothing."""
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.give_back(self._name)


class SubscriptionSlots:
    """Subscriptions held per identity name, at most ``per_identity`` each."""

    def __init__(self, per_identity: int) -> None:
        self.per_identity = per_identity
        self.held: Counter[str] = Counter()
        """Subscriptions held now, by identity name (for tests and metrics)."""

    def take(self, name: str) -> Slot | None:
        """A slot for ``name``, or None when it holds its maximum already."""
        if self.held[name] >= self.per_identity:
            return None
        self.held[name] += 1
        return Slot(self, name)

    def give_back(self, name: str) -> None:
        """Called by :meth:`Slot.release` only."""
        self.held[name] -= 1
        if self.held[name] <= 0:
            del self.held[name]
