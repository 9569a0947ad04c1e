"""Security settings: client authentication, exposure, CORS, operation and rate limits.

Read by :func:`security_from_environ`; the README's Security section explains each.
``GATEWAY_AUTH`` has no default for ``serve``: running without client authentication
must be a decision (``none``), never an accident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import jwt

from gateway.env import EnvReader, read_secret_file, required_file
from gateway.errors import ConfigError
from gateway.persisted_queries import load_documents
from gateway.security.api_keys import StoredKey, load_keys
from gateway.security.identity import ALL_SCOPES, READ
from gateway.security.jwt_auth import JwtVerifier

AUTH_MODES: Final = ("api-key", "jwt", "none")
_ASYMMETRIC: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_HMAC: Final = frozenset({"HS256", "HS384", "HS512"})


@dataclass(frozen=True)
class SecuritySettings:
    """Who may call, what they see, and how much they may ask."""

    auth: str = "none"
    api_keys: tuple[StoredKey, ...] = ()
    jwt: JwtVerifier | None = None
    anonymous_scopes: frozenset[str] = frozenset({READ})
    graphiql: bool = False
    introspection: bool = False
    cors_origins: tuple[str, ...] = ()
    max_depth: int = 10
    max_aliases: int = 50
    max_tokens: int = 2000
    max_selections: int = 300
    """Fields a request may select, fragments expanded (a batch's operations together)."""
    max_spreads: int = 100
    """Fragment spreads a request may make, fragments expanded."""
    max_body_bytes: int = 65_536
    batching: bool = False
    max_batch: int = 10
    rate: float | None = None
    """Requests per second per identity; None (the default): no request rate limit.
    Cached reads cost the PBX nothing, and the PBX-fetch budget below guards the misses."""
    burst: float | None = None
    """The request bucket's size; None: twice ``rate``."""
    miss_rate: float = 1.0
    miss_burst: float = 10.0
    trusted_proxies: tuple[str, ...] = field(default=())
    persisted_only: bool = False
    """Run only the documents in ``persisted_documents`` (an operation allowlist)."""
    persisted_documents: Mapping[str, str] = field(default_factory=dict)
    """Registered documents by SHA-256, from ``GATEWAY_PERSISTED_QUERIES_FILE``."""
    apq_max_entries: int = 1000
    """Documents Automatic Persisted Queries remembers (0: APQ off); clients fill it."""
    apq_ttl: float = 86_400.0
    """Seconds APQ remembers a document after it was sent in full."""


def security_from_environ(reader: EnvReader) -> SecuritySettings:
    """Read ``GATEWAY_AUTH`` and the rest; ConfigError naming the first bad variable. A
    variable left unset takes the field's default in :class:`SecuritySettings`."""
    d = SecuritySettings
    auth = reader.choice("GATEWAY_AUTH", AUTH_MODES)
    keys_file = reader.file("GATEWAY_API_KEYS_FILE")
    if auth == "api-key" and keys_file is None:
        raise ConfigError("GATEWAY_API_KEYS_FILE is required with GATEWAY_AUTH=api-key")
    anonymous = frozenset(reader.words("GATEWAY_ANONYMOUS_SCOPES", tuple(d.anonymous_scopes)))
    if anonymous - ALL_SCOPES:
        raise ConfigError(f"GATEWAY_ANONYMOUS_SCOPES: unknown {sorted(anonymous - ALL_SCOPES)}")
    origins = reader.words("GATEWAY_CORS_ORIGINS")
    for origin in origins:
        if origin == "*" or not origin.startswith(("http://", "https://")) or origin.count("/") > 2:
            raise ConfigError(
                "GATEWAY_CORS_ORIGINS lists exact origins such as https://wallboard.example.com "
                f"(no '*', no path); got {origin!r}"
            )
    documents_file = reader.file("GATEWAY_PERSISTED_QUERIES_FILE")
    persisted_only = reader.boolean("GATEWAY_PERSISTED_ONLY", d.persisted_only)
    if persisted_only and documents_file is None:
        raise ConfigError("GATEWAY_PERSISTED_QUERIES_FILE is required with GATEWAY_PERSISTED_ONLY")
    return SecuritySettings(
        auth=auth,
        api_keys=load_keys(keys_file) if auth == "api-key" and keys_file else (),
        jwt=_jwt_verifier(reader) if auth == "jwt" else None,
        anonymous_scopes=anonymous,
        graphiql=reader.boolean("GATEWAY_GRAPHIQL", d.graphiql),
        introspection=reader.boolean("GATEWAY_INTROSPECTION", d.introspection),
        cors_origins=origins,
        max_depth=reader.integer("GATEWAY_MAX_DEPTH", d.max_depth, minimum=2),
        max_aliases=reader.integer("GATEWAY_MAX_ALIASES", d.max_aliases, minimum=1),
        max_tokens=reader.integer("GATEWAY_MAX_TOKENS", d.max_tokens, minimum=50),
        max_selections=reader.integer("GATEWAY_MAX_SELECTIONS", d.max_selections, minimum=1),
        max_spreads=reader.integer("GATEWAY_MAX_FRAGMENT_SPREADS", d.max_spreads, minimum=0),
        max_body_bytes=reader.integer("GATEWAY_MAX_BODY_BYTES", d.max_body_bytes, minimum=1024),
        batching=reader.boolean("GATEWAY_BATCHING", d.batching),
        max_batch=reader.integer("GATEWAY_MAX_BATCH", d.max_batch, minimum=1),
        rate=reader.optional_number("GATEWAY_RATE_LIMIT", minimum=0.01),
        burst=_request_burst(reader),
        miss_rate=reader.number("GATEWAY_MISS_RATE_LIMIT", d.miss_rate, minimum=0.001),
        miss_burst=reader.number("GATEWAY_MISS_BURST", d.miss_burst, minimum=1),
        persisted_only=persisted_only,
        persisted_documents=load_documents(documents_file) if documents_file else {},
        apq_max_entries=reader.integer("GATEWAY_APQ_MAX_ENTRIES", d.apq_max_entries, minimum=0),
        apq_ttl=reader.number("GATEWAY_APQ_TTL", d.apq_ttl, minimum=1),
        trusted_proxies=reader.words("GATEWAY_TRUSTED_PROXIES"),
    )


def _request_burst(reader: EnvReader) -> float | None:
    """``GATEWAY_RATE_BURST``, which means something only with ``GATEWAY_RATE_LIMIT``."""
    burst = reader.optional_number("GATEWAY_RATE_BURST", minimum=1)
    if burst is not None and reader.get("GATEWAY_RATE_LIMIT") is None:
        raise ConfigError(
            "GATEWAY_RATE_BURST needs GATEWAY_RATE_LIMIT (request rate limiting is off "
            "unless GATEWAY_RATE_LIMIT is set)"
        )
    return burst


def _jwt_verifier(reader: EnvReader) -> JwtVerifier:
    sources = [
        name
        for name in (
            "GATEWAY_JWT_PUBLIC_KEY_FILE",
            "GATEWAY_JWT_JWKS_FILE",
            "GATEWAY_JWT_SECRET_FILE",
        )
        if reader.get(name) is not None
    ]
    if len(sources) != 1:
        raise ConfigError(
            "GATEWAY_AUTH=jwt needs exactly one of GATEWAY_JWT_PUBLIC_KEY_FILE, "
            "GATEWAY_JWT_JWKS_FILE, GATEWAY_JWT_SECRET_FILE"
        )
    source = sources[0]
    path = required_file(reader, source)
    hmac_key = source == "GATEWAY_JWT_SECRET_FILE"
    algorithms = reader.words("GATEWAY_JWT_ALGORITHMS", ("HS256",) if hmac_key else ("RS256",))
    allowed = _HMAC if hmac_key else _ASYMMETRIC
    if not algorithms or set(algorithms) - allowed:
        raise ConfigError(
            f"GATEWAY_JWT_ALGORITHMS with {source} may only name {', '.join(sorted(allowed))}; "
            f"got {', '.join(algorithms) or 'nothing'}"
        )
    text = read_secret_file(source, path)
    key: object = None
    jwks: jwt.PyJWKSet | None = None
    try:
        if source == "GATEWAY_JWT_JWKS_FILE":
            jwks = jwt.PyJWKSet.from_json(text)
        elif hmac_key:
            if len(text.encode()) < 32:
                raise ConfigError(f"{source} must hold at least 32 bytes of secret")
            key = text.encode()
        else:
            if "PRIVATE KEY" in text:  # it verifies, but the gateway must never hold it
                raise ConfigError(
                    f"{source} holds a private key: give the gateway only the public key"
                )
            key = jwt.algorithms.get_default_algorithms()[algorithms[0]].prepare_key(text)
    except (jwt.PyJWTError, ValueError, TypeError, json.JSONDecodeError):
        raise ConfigError(f"{source}: {path} does not hold a usable key") from None
    return JwtVerifier(
        algorithms=algorithms,
        audience=reader.required("GATEWAY_JWT_AUDIENCE", " (with GATEWAY_AUTH=jwt)"),
        issuer=reader.required("GATEWAY_JWT_ISSUER", " (with GATEWAY_AUTH=jwt)"),
        scopes_claim=reader.get("GATEWAY_JWT_SCOPES_CLAIM") or JwtVerifier.scopes_claim,
        leeway=reader.number("GATEWAY_JWT_LEEWAY", JwtVerifier.leeway, minimum=0),
        key=key,
        jwks=jwks,
    )
