"""Persisted queries: Apollo's Automatic Persisted Queries, and an allowlist mode.

Automatic Persisted Queries (APQ), as Apollo Client's persisted-queries link speaks them:
the request carries ``extensions.persistedQuery = {"version": 1, "sha256Hash": ...}``.

1. The client first sends only the hash, with GET if it may, so a CDN can cache the
   answer under a short URL.
2. An unknown hash is answered ``PersistedQueryNotFound`` (``extensions.code``
   ``PERSISTED_QUERY_NOT_FOUND``, Apollo's exact strings); the client retries with the
   document and the hash.
3. The hash must be the SHA-256 of the document (else ``BAD_USER_INPUT`` "provided sha
   does not match query"). Once the document has parsed and validated it is remembered
   in a bounded TTL+LRU cache (``GATEWAY_APQ_MAX_ENTRIES``, ``GATEWAY_APQ_TTL``), and
   the hash alone runs it from then on, for every client: the hash names the document,
   and anyone who knows the document could send it anyway.

Allowlist (``GATEWAY_PERSISTED_ONLY=true``): only the documents registered in
``GATEWAY_PERSISTED_QUERIES_FILE`` run, by hash or sent in full; anything else is refused
``PERSISTED_QUERY_NOT_ALLOWED`` and APQ learns nothing. The file is a JSON map
``{sha256: document}`` or Apollo's persisted-query manifest
(``{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id",
"body", "name", "type"}]}``), read once at start-up; each id must be its body's SHA-256.
Without the allowlist flag the file's documents are simply always known by hash.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cachetools import TTLCache
from graphql import GraphQLError, parse

from gateway.error_code import ErrorCode
from gateway.errors import ConfigError

MANIFEST_FORMAT: Final = "apollo-persisted-query-manifest"
NOT_FOUND: Final = ErrorCode.PERSISTED_QUERY_NOT_FOUND
NOT_SUPPORTED: Final = ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED
NOT_ALLOWED: Final = ErrorCode.PERSISTED_QUERY_NOT_ALLOWED


class PersistedQueryError(Exception):
    """A request the persisted-query layer refuses, before any GraphQL work.

    ``malformed`` refusals (a bad ``persistedQuery``, a hash that does not match, a
    document not on the allowlist) are always HTTP 400. The others (an unknown hash,
    APQ switched off) are GraphQL request errors: 400 with
    ``application/graphql-response+json``, 200 with ``application/json``, as Apollo
    Server answers them and Apollo Client expects.
    """

    def __init__(self, message: str, code: ErrorCode, *, malformed: bool) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.malformed = malformed


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document to run, and the hash to remember once it has validated (APQ)."""

    query: str | None
    register: str | None = None


def sha256_hex(document: str) -> str:
    """The APQ hash of ``document``: SHA-256 of its UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


class PersistedQueries:
    """Resolves ``extensions.persistedQuery`` to a document; see the module docstring."""

    def __init__(
        self,
        *,
        documents: Mapping[str, str] | None = None,
        only_registered: bool = False,
        max_entries: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registered = dict(documents or {})
        self._only_registered = only_registered
        self._learned: TTLCache[str, str] | None = None
        if max_entries > 0 and not only_registered:
            self._learned = TTLCache(max_entries, ttl, timer=clock)

    def resolve(self, query: str | None, extensions: Mapping[str, Any] | None) -> Resolved:
        """The document this request runs; raises :class:`PersistedQueryError` to refuse."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            if self._only_registered and query is not None and not self._is_registered(query):
                raise _not_allowed()
            return Resolved(query)
        wanted = _hash_of(persisted)
        if query is None:
            known = self._registered.get(wanted) or self._recall(wanted)
            if known is not None:
                return Resolved(known)
            if self._learned is None and not self._only_registered:
                raise PersistedQueryError(
                    "PersistedQueryNotSupported", NOT_SUPPORTED, malformed=False
                )
            raise PersistedQueryError("PersistedQueryNotFound", NOT_FOUND, malformed=False)
        if sha256_hex(query) != wanted:
            raise PersistedQueryError(
                "provided sha does not match query", ErrorCode.BAD_USER_INPUT, malformed=True
            )
        if wanted in self._registered:
            return Resolved(query)
        if self._only_registered:
            raise _not_allowed()
        return Resolved(query, register=wanted if self._learned is not None else None)

    def remember(self, sha256: str, query: str) -> None:
        """Keep ``query`` under its hash (after it parsed and validated)."""
        if self._learned is not None:
            self._learned[sha256] = query

    def _is_registered(self, query: str) -> bool:
        return sha256_hex(query) in self._registered

    def _recall(self, sha256: str) -> str | None:
        if self._learned is None:
            return None
        return self._learned.get(sha256)  # a hit renews its LRU place, not its TTL


def load_documents(path: Path, variable: str = "GATEWAY_PERSISTED_QUERIES_FILE") -> dict[str, str]:
    """The ``{sha256: document}`` registered in ``path``: a plain JSON map or Apollo's
    persisted-query manifest. ConfigError, naming ``variable``, on anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{variable}: {path} is not readable JSON ({exc})") from None
    if isinstance(data, dict) and "format" in data:
        pairs = _manifest_pairs(data, variable)
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise ConfigError(
            f"{variable}: expected a JSON object {{sha256: document}} or an Apollo "
            f"persisted-query manifest, got {type(data).__name__}"
        )
    documents: dict[str, str] = {}
    for key, body in pairs:
        if not isinstance(key, str) or not isinstance(body, str):
            raise ConfigError(f"{variable}: every id and document must be a string")
        if sha256_hex(body) != key.lower():
            raise ConfigError(
                f"{variable}: id {key[:16]}... is not the SHA-256 of its document "
                "(ids must be sha256 hex, as Apollo's manifest generator makes them)"
            )
        try:
            parse(body)
        except GraphQLError as exc:
            message = f"{variable}: document {key[:16]}... does not parse: {exc.message}"
            raise ConfigError(message) from None
        documents[key.lower()] = body
    return documents


def _manifest_pairs(data: dict[str, Any], variable: str) -> list[tuple[object, object]]:
    if data.get("format") != MANIFEST_FORMAT or data.get("version") != 1:
        raise ConfigError(
            f"{variable}: unknown manifest format {data.get('format')!r} "
            f"version {data.get('version')!r}; expected {MANIFEST_FORMAT!r} version 1"
        )
    operations = data.get("operations")
    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise ConfigError(f"{variable}: the manifest's 'operations' must be a list of objects")
    return [(operation.get("id"), operation.get("body")) for operation in operations]


def _hash_of(persisted: object) -> str:
    if not isinstance(persisted, dict):
        raise PersistedQueryError(
            "extensions.persistedQuery must be an object", ErrorCode.BAD_USER_INPUT, malformed=True
        )
    if persisted.get("version") != 1:
        raise PersistedQueryError(
            "Unsupported persisted query version", ErrorCode.BAD_USER_INPUT, malformed=True
        )
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str):
        raise PersistedQueryError(
            "extensions.persistedQuery.sha256Hash must be a string",
            ErrorCode.BAD_USER_INPUT,
            malformed=True,
        )
    return sha256.lower()


def _not_allowed() -> PersistedQueryError:
    return PersistedQueryError(
        "this gateway runs only registered persisted queries "
        "(GATEWAY_PERSISTED_ONLY): send the sha256Hash of a registered document",
        NOT_ALLOWED,
        malformed=True,
    )
