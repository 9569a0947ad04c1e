"""Media types of GraphQL over HTTP: which one a response uses, which one a request may.

The GraphQL over HTTP specification (the 2024+ draft) defines two response types:

- ``application/graphql-response+json``, the preferred one: request errors (a document
  that does not parse or validate, variables that do not coerce) get a ``4xx`` status,
  so a client can trust a non-``2xx`` answer to come from the GraphQL server;
- ``application/json``, for legacy clients: every well-formed request gets ``200``.

:func:`negotiate` picks one from the ``Accept`` header as RFC 9110 section 12.5.1 says (the
highest ``q``; a more specific range beats a wildcard). Ties go to
``application/graphql-response+json`` when it is named, and to ``application/json`` when
only wildcards match (``*/*`` is what legacy clients send). No ``Accept`` at all means
``application/graphql-response+json``: the spec's default since its 2025-01-01 watershed.
``None`` means nothing acceptable: answer ``406``.
"""

from __future__ import annotations

from typing import Final

GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
JSON: Final = "application/json"

_EXACT, _SUBTYPE_WILDCARD, _WILDCARD, _NO_MATCH = 2, 1, 0, -1


def negotiate(accept: str | None) -> str | None:
    """The response media type for this ``Accept`` value, or ``None`` (answer 406)."""
    if accept is None or not accept.strip():
        return GRAPHQL_RESPONSE_JSON
    preferred = _preference(accept, GRAPHQL_RESPONSE_JSON)
    legacy = _preference(accept, JSON)
    if max(preferred[0], legacy[0]) <= 0:
        return None
    if preferred != legacy:
        return GRAPHQL_RESPONSE_JSON if preferred > legacy else JSON
    return GRAPHQL_RESPONSE_JSON if preferred[1] == _EXACT else JSON


def content_type(media_type: str) -> str:
    """The ``Content-Type`` of a response in ``media_type`` (always UTF-8)."""
    return f"{media_type}; charset=utf-8"


def is_json_request(value: str | None) -> bool:
    """Whether a POST body's ``Content-Type`` is ``application/json`` in UTF-8 (the spec's
    one required request type; no charset means UTF-8)."""
    if value is None:
        return False
    media, _, parameters = value.partition(";")
    if media.strip().lower() != JSON:
        return False
    for parameter in parameters.split(";"):
        name, _, raw = parameter.partition("=")
        if name.strip().lower() == "charset" and raw.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _preference(accept: str, candidate: str) -> tuple[float, int]:
    """``(q, specificity)`` of the most specific range in ``accept`` matching ``candidate``."""
    best = (0.0, _NO_MATCH)
    for item in accept.split(","):
        media, _, parameters = item.partition(";")
        specificity = _match(media.strip().lower(), candidate)
        if specificity <= best[1]:
            continue
        quality = _quality(parameters)
        if quality is not None:
            best = (quality, specificity)
    return best


def _match(media_range: str, candidate: str) -> int:
    if media_range == candidate:
        return _EXACT
    if media_range == candidate.split("/")[0] + "/*":
        return _SUBTYPE_WILDCARD
    return _WILDCARD if media_range == "*/*" else _NO_MATCH


def _quality(parameters: str) -> float | None:
    """The ``q`` weight (default 1), or None when it is malformed (the range is ignored)."""
    for parameter in parameters.split(";"):
        name, _, raw = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                value = float(raw.strip())
            except ValueError:
                return None
            return value if 0.0 <= value <= 1.0 else None
    return 1.0
