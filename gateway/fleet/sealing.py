"""Sealed entries: what the fleet shares through Redis, encrypted and authenticated.

Anyone who can read Redis (a backup, a monitoring tool, a neighbour on a shared instance)
must not read the rooms' PINs there, and anyone who can write to it must not make the
fleet serve what they wrote. So every shared cache entry is sealed with AES-GCM under a
key derived (HKDF) from the fleet key, ``GATEWAY_REDIS_TOKEN_KEY``:

- the payload (rooms, their PINs, the listing) is encrypted;
- the Redis key the entry is stored under is the associated data, so an entry copied to
  another key (room 6400's PINs served as room 6401's) fails authentication;
- the time of the fetch is inside the sealed part, and :meth:`Sealer.open` refuses an
  entry dated in the future (beyond a small clock skew between replicas) or older than
  the longest it may be served (the stale TTL): a replayed or post-dated entry is never
  served as fresh.

A refused entry is treated as missing (the replica asks the PBX) and logged once per kind
of refusal, naming the Redis key but never its content; ``refused`` counts them all.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.secrets import Secret

logger = logging.getLogger(__name__)

VERSION: Final = b"s1"
"""Leads every sealed blob; an entry without it was written by an older gateway."""

NONCE_BYTES: Final = 12
CLOCK_SKEW: Final = 5.0
"""Seconds a replica's clock may run ahead of another's before its entries are refused."""


@dataclass(frozen=True)
class Refusal:
    """Why an entry is not served: ``kind`` (mac, future, old, unsealed, shape) and a phrase."""

    kind: str
    why: str


def derive_key(fleet_key: Secret, purpose: str) -> bytes:
    """A 32-byte key for ``purpose``, derived from the fleet key: one key, one use each."""
    raw = base64.urlsafe_b64decode(fleet_key.reveal().encode())
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose.encode()).derive(raw)


class Sealer:
    """Seals and opens the fleet's shared entries; see the module docstring."""

    def __init__(
        self,
        fleet_key: Secret,
        *,
        skew: float = CLOCK_SKEW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._aead = AESGCM(derive_key(fleet_key, "pbxgw shared entries v1"))
        self._skew = skew
        self._clock = clock
        self._warned: set[str] = set()
        self.refused: Counter[str] = Counter()

    def seal(self, name: str, data: Any, at: float) -> bytes:
        """``data`` (JSON-ready) fetched at ``at`` (wall clock), for the Redis key ``name``."""
        plain = json.dumps({"at": at, "data": data}, separators=(",", ":")).encode()
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, plain, name.encode())

    def open(self, name: str, blob: bytes, *, max_age: float) -> tuple[Any, float] | None:
        """``(data, at)`` if ``blob`` was sealed for ``name`` by the fleet, is not from the
        future and not older than ``max_age``; else None (logged, counted)."""
        opened = self._unseal(name, blob)
        if isinstance(opened, Refusal):
            self._refuse(opened, name)
            return None
        data, at = opened
        now = self._clock()
        if at > now + self._skew:
            self._refuse(Refusal("future", f"it is dated {at - now:.0f} s in the future"), name)
            return None
        if now - at > max_age:
            self._refuse(Refusal("old", f"it is {now - at:.0f} s old, past {max_age:.0f} s"), name)
            return None
        return data, at

    def _unseal(self, name: str, blob: bytes) -> tuple[Any, float] | Refusal:
        if not blob.startswith(VERSION) or len(blob) < len(VERSION) + NONCE_BYTES + 16:
            return Refusal("unsealed", "it is not sealed with the fleet key")
        nonce = blob[len(VERSION) : len(VERSION) + NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, blob[len(VERSION) + NONCE_BYTES :], name.encode())
            sealed = json.loads(plain)
            return sealed["data"], float(sealed["at"])
        except InvalidTag:
            return Refusal(
                "mac",
                "its authentication failed (sealed under another Redis key or with another "
                "GATEWAY_REDIS_TOKEN_KEY, or altered)",
            )
        except (ValueError, KeyError, TypeError):
            return Refusal("shape", "its content is not an entry this gateway writes")

    def _refuse(self, refusal: Refusal, name: str) -> None:
        self.refused[refusal.kind] += 1
        if refusal.kind not in self._warned:  # once per kind: a flood of bad entries is one line
            self._warned.add(refusal.kind)
            logger.warning(
                "refused the shared Redis entry %s: %s; treating it as missing (further "
                "refusals of this kind are counted, not logged)",
                name,
                refusal.why,
            )
