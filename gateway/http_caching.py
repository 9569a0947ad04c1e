"""HTTP caching of GraphQL answers: ``Cache-Control``, ``ETag``, ``304 Not Modified``.

A query sent with GET (an APQ hash makes that a short URL) can be kept by the browser and
by a CDN. What may be kept, and for how long:

- ``no-store`` for POST, for any answer with errors and for stale data
  (``extensions.stale``): none of those may be reused.
- Otherwise ``public`` when the gateway authenticates no one (``GATEWAY_AUTH=none``:
  every caller gets the same answer), ``private`` when it does: a key or token decides
  what a caller may see (PINs, for one), so a shared cache must never hand one client's
  answer to another. ``max-age`` is the data's remaining freshness:
  ``GATEWAY_CACHE_TTL`` minus the age of the oldest store entry that answered, rounded
  down, never below 0 (an answer that read nothing from the store, such as
  ``{ __typename }``, gets the whole TTL).
- ``ETag``: weak, an HMAC-SHA-256 of the body and its media type under a per-deployment
  key, so a tag tells nothing about the body (an unkeyed hash of an answer whose every
  other field a reader knows gave its PIN away by brute force in 0.09 s). The key is
  random per process, or, with a fleet, derived from ``GATEWAY_REDIS_TOKEN_KEY`` so every
  replica gives the same tag. ``If-None-Match``
  that matches (weak comparison, RFC 9110 section 13.1.2) gets ``304`` without a body.
  The query still runs to know the answer, from the gateway's cache, so a revalidation
  within the TTL costs no PBX call; only the bytes are saved.
- ``Vary: Accept, Authorization, X-API-Key`` on every answer: the media type and status
  follow ``Accept``, the data follows the credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass, field
from typing import Final

from starlette.responses import Response

from gateway.secrets import Secret

VARY: Final = "Accept, Authorization, X-API-Key"
NO_STORE: Final = "no-store"


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How cacheable answers are marked: shared (``public``) or not, and the store's TTL."""

    shared: bool
    ttl: float
    etag_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """The ETag HMAC key (:func:`etag_key`)."""

    def cache_control(self, oldest_fetched_at: float | None, now: float) -> str:
        """``Cache-Control`` for a clean GET answer built from entries fetched since
        ``oldest_fetched_at`` (``None``: nothing came from the store)."""
        remaining = self.ttl if oldest_fetched_at is None else oldest_fetched_at + self.ttl - now
        seconds = max(0, math.floor(min(self.ttl, remaining)))
        return f"{'public' if self.shared else 'private'}, max-age={seconds}"


def etag_key(fleet_key: Secret | None) -> bytes:
    """The deployment's ETag key: derived from the fleet's key, so replicas agree, or
    random for this process alone (a restart changes every tag: one full answer each)."""
    if fleet_key is None:
        return secrets.token_bytes(32)
    return hmac.digest(fleet_key.reveal().encode(), b"pbx-gateway etag v1", hashlib.sha256)


def etag_for(body: bytes, media_type: str, key: bytes) -> str:
    """A weak entity tag for ``body`` sent as ``media_type`` (one representation each),
    keyed so that it reveals nothing about the body."""
    digest = hmac.new(key, media_type.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    return f'W/"{digest[:32]}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison) or is ``*``."""
    if not if_none_match:
        return False
    tags = {_opaque(tag.strip()) for tag in if_none_match.split(",")}
    return "*" in tags or _opaque(etag) in tags


def uncacheable(response: Response) -> Response:
    """Mark ``response`` as never to be stored."""
    response.headers["cache-control"] = NO_STORE
    response.headers["vary"] = VARY
    return response


def cacheable(
    response: Response, cache_control: str, if_none_match: str | None, etag_key: bytes
) -> Response:
    """Mark ``response`` cacheable with an ETag, or answer ``304`` when the client's copy
    (``If-None-Match``) is still the same."""
    media_type = response.headers.get("content-type", "")
    etag = etag_for(bytes(response.body), media_type, etag_key)
    headers = {"cache-control": cache_control, "etag": etag, "vary": VARY}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")
