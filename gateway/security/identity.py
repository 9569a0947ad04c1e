"""The caller as the gateway knows it: a name for logs and rate limits, and its scopes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

READ: Final = "conferences:read"
"""Query conferences."""
PINS: Final = "conferences:pins"
"""Additionally read participant and moderator PINs."""
WRITE: Final = "conferences:write"
"""Change conference settings."""
MODERATE: Final = "conferences:moderate"
"""Mute, unmute, remove and invite the participants of a running conference."""

ALL_SCOPES: Final = frozenset({READ, PINS, WRITE, MODERATE})


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or, with ``GATEWAY_AUTH=none``, anonymous) caller."""

    name: str
    """Key name, JWT subject, or ``anonymous@<address>``: never a secret."""
    scopes: frozenset[str]
    kind: str
    """``api-key``, ``jwt`` or ``anonymous``."""
    expires_at: float | None = field(default=None, compare=False)
    """Unix time at which the credential stops being accepted (a JWT's ``exp`` plus the
    leeway); None: it does not expire. A WebSocket closes then (it authenticated once)."""

    def has(self, scope: str) -> bool:
        """Whether the caller holds ``scope``."""
        return scope in self.scopes
