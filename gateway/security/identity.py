"""The caller as the gateway knows it: a name for logs and rate limits, and its scopes."""

from __future__ import annotations

from dataclasses import dataclass
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

    def has(self, scope: str) -> bool:
        """Whether the caller holds ``scope``."""
        return scope in self.scopes
