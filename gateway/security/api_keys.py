"""API keys: the client sends a random key; the gateway stores only its SHA-256.

The keys file (``GATEWAY_API_KEYS_FILE``) is JSON::

    {"keys": [{"name": "wallboard", "sha256": "<64 hex>", "scopes": ["conferences:read"]}]}

``pbx-gateway api-key --name wallboard --scope conferences:read`` makes a key and prints
the entry. A presented key is hashed and compared with every stored hash in constant
time (``hmac.compare_digest``, no early exit), so timing tells nothing about which key
was close.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.errors import ConfigError
from gateway.security.identity import ALL_SCOPES, Identity

_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_NAME: Final = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One entry of the keys file."""

    name: str
    digest: bytes
    scopes: frozenset[str]


def hash_key(key: str) -> str:
    """The hex SHA-256 of a presented key, as stored in the keys file."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key: 32 bytes, URL-safe, prefixed so it is recognisable in a leak scan."""
    return "pbxgw_" + secrets.token_urlsafe(32)


def load_keys(path: Path) -> tuple[StoredKey, ...]:
    """Parse and check the keys file; ConfigError naming the entry that is wrong."""
    name = "GATEWAY_API_KEYS_FILE"
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{name}: {path} is not readable JSON ({type(exc).__name__})") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{name}: {path} must hold {{"keys": [...]}} with at least one key')
    keys: list[StoredKey] = []
    for index, entry in enumerate(entries):
        where = f"{name}: keys[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object with name, sha256 and scopes")
        key_name, digest, scopes = entry.get("name"), entry.get("sha256"), entry.get("scopes")
        if not isinstance(key_name, str) or not _NAME.match(key_name):
            raise ConfigError(f"{where}.name must be 1-64 letters, digits or ._@-")
        if not isinstance(digest, str) or not _SHA256_HEX.match(digest):
            raise ConfigError(f"{where}.sha256 must be 64 lower-case hex (hash, not the key)")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ConfigError(f"{where}.scopes must be a list of scope names")
        unknown = set(scopes) - ALL_SCOPES
        if unknown:
            raise ConfigError(
                f"{where}.scopes has unknown {sorted(unknown)}; known: {sorted(ALL_SCOPES)}"
            )
        if any(key.name == key_name for key in keys):
            raise ConfigError(f"{where}.name {key_name!r} is used twice: key names must be unique")
        keys.append(StoredKey(key_name, bytes.fromhex(digest), frozenset(scopes)))
    return tuple(keys)


class ApiKeyAuthenticator:
    """Finds the stored key matching a presented one, in constant time."""

    def __init__(self, keys: tuple[StoredKey, ...]) -> None:
        self._keys = keys

    def identify(self, presented: str) -> Identity | None:
        """The key's identity, or None when no stored key matches."""
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        match: StoredKey | None = None
        for key in self._keys:  # every key is compared: no early exit on a match
            if hmac.compare_digest(digest, key.digest):
                match = key
        if match is None:
            return None
        return Identity(name=match.name, scopes=match.scopes, kind="api-key")
