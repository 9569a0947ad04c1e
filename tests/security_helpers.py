"""Shared pieces of the security tests: keys files, signed and forged JWTs, refusal checks.

API keys are made the way an operator makes them (``new_key`` / ``hash_key``, a keys file,
``load_keys``); JWTs are signed with RSA keys generated here, and the attacks (HMAC with
the public key as secret, ``alg: none``) are forged by hand, because PyJWT rightly refuses
to produce them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.security.api_keys import StoredKey, hash_key, load_keys, new_key
from gateway.security.config import SecuritySettings
from gateway.security.jwt_auth import JwtVerifier

UNLIMITED: Final[dict[str, float]] = {
    "rate": 1e6,
    "burst": 1e6,
    "miss_rate": 1e6,
    "miss_burst": 1e6,
}
"""Rate-limit fields that never bite, for tests about something else."""

AUDIENCE: Final = "pbx-gateway"
ISSUER: Final = "https://idp.example"

ROOM_QUERY: Final = '{ conference(number: "6400") { number name } }'
ROOM_ANSWER: Final = {"data": {"conference": {"number": "6400", "name": "Sales"}}}


# --- API keys ------------------------------------------------------------------------------


Keys = tuple[tuple[StoredKey, ...], dict[str, str]]
"""The loaded keys file, and the plain keys by name (what clients would send)."""


def write_keys(tmp_path: Path, scopes_by_name: Mapping[str, Iterable[str]]) -> Keys:
    """A keys file with one fresh key per name, loaded; and the plain keys by name."""
    plain = {name: new_key() for name in scopes_by_name}
    entries = [
        {"name": name, "sha256": hash_key(plain[name]), "scopes": sorted(scopes)}
        for name, scopes in scopes_by_name.items()
    ]
    path = tmp_path / "api-keys.json"
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    return load_keys(path), plain


def api_key_security(stored: tuple[StoredKey, ...], **overrides: Any) -> SecuritySettings:
    """``GATEWAY_AUTH=api-key`` with ``stored``, unlimited rates unless overridden."""
    fields: dict[str, Any] = {"auth": "api-key", "api_keys": stored, **UNLIMITED, **overrides}
    return SecuritySettings(**fields)


def anonymous_security(scopes: Iterable[str], **overrides: Any) -> SecuritySettings:
    """``GATEWAY_AUTH=none`` with ``scopes`` for everyone, unlimited rates unless overridden."""
    fields: dict[str, Any] = {
        "auth": "none",
        "anonymous_scopes": frozenset(scopes),
        **UNLIMITED,
        **overrides,
    }
    return SecuritySettings(**fields)


# --- JWTs ----------------------------------------------------------------------------------


@functools.cache
def rsa_private_key(label: str) -> rsa.RSAPrivateKey:
    """An RSA key pair per label (``issuer``, ``attacker``), made once per test run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(label: str) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of ``label``'s public key."""
    return (
        rsa_private_key(label)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def private_pem(label: str) -> bytes:
    """The unencrypted PKCS#8 PEM of ``label``'s private key."""
    return rsa_private_key(label).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def jwt_verifier(**overrides: Any) -> JwtVerifier:
    """RS256 against the ``issuer`` key, with the test audience and issuer."""
    fields: dict[str, Any] = {
        "algorithms": ("RS256",),
        "audience": AUDIENCE,
        "issuer": ISSUER,
        "key": rsa_private_key("issuer").public_key(),
        **overrides,
    }
    return JwtVerifier(**fields)


def jwk_for(label: str, kid: str) -> dict[str, Any]:
    """``label``'s public key as a JWK (a dict) under ``kid``."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_private_key(label).public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def jwks_for(label: str, kid: str) -> jwt.PyJWKSet:
    """A JWKS holding ``label``'s public key under ``kid``."""
    return jwt.PyJWKSet.from_dict({"keys": [jwk_for(label, kid)]})


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims for the test audience and issuer; ``name=None`` drops a claim."""
    base: dict[str, Any] = {
        "sub": "wallboard-service",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "exp": int(time.time()) + 600,
        "scope": "conferences:read",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    payload: Mapping[str, Any], *, label: str = "issuer", headers: dict[str, Any] | None = None
) -> str:
    """``payload`` signed RS256 with ``label``'s private key."""
    return jwt.encode(dict(payload), rsa_private_key(label), algorithm="RS256", headers=headers)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def forge(header: Mapping[str, Any], payload: Mapping[str, Any], secret: bytes | None) -> str:
    """A hand-made JWT: HS256 over ``secret``, or no signature at all when it is None."""
    signing_input = (
        _b64(json.dumps(dict(header)).encode()) + b"." + _b64(json.dumps(dict(payload)).encode())
    )
    signature = b"" if secret is None else hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


# --- responses -----------------------------------------------------------------------------


def codes(body: Mapping[str, Any]) -> list[str | None]:
    """The ``extensions.code`` of every error in a GraphQL response body (None: uncoded)."""
    return [(error.get("extensions") or {}).get("code") for error in body.get("errors") or []]


def coded_errors(body: Mapping[str, Any]) -> dict[tuple[Any, ...], str | None]:
    """Each error's path (as a tuple, () when it has none) mapped to its code."""
    return {
        tuple(error.get("path") or ()): (error.get("extensions") or {}).get("code")
        for error in body.get("errors") or []
    }


def refusal(response: httpx.Response, status: int, code: str) -> str:
    """Check an HTTP-level refusal (status, one coded error, JSON); its message."""
    assert response.status_code == status, response.text
    assert "json" in response.headers["content-type"]  # application/json or graphql-response+json
    body = response.json()
    assert codes(body) == [code], body
    message: str = body["errors"][0]["message"]
    return message
