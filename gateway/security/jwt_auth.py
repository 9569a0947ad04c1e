"""JWT bearer tokens, verified with PyJWT against a configured key.

The key is a PEM public key, a JWKS file (keys picked by ``kid``), or for HMAC a shared
secret file. The algorithm list is fixed by configuration (``none`` is never accepted,
and HMAC is never accepted with a public key: that mix is the classic key-confusion
attack). Expiry, audience and issuer are required and checked; scopes come from a claim
(``scope``: space-separated, or a list), keeping only the gateway's own scope names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from gateway.security.identity import ALL_SCOPES, Identity


class InvalidToken(Exception):
    """A bearer token that cannot be accepted; the message says why, without the token."""


@dataclass(frozen=True)
class JwtVerifier:
    """Checks one token; see the module docstring for the rules."""

    algorithms: tuple[str, ...]
    audience: str
    issuer: str
    scopes_claim: str = "scope"
    leeway: float = 30.0
    key: Any = None
    jwks: jwt.PyJWKSet | None = None

    def identify(self, token: str) -> Identity:
        """The token's identity; InvalidToken when it is not acceptable."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self._key_for(header),
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the bearer token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the bearer token is from another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken("the bearer token's algorithm is not allowed") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the bearer token lacks the {exc.claim!r} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("the bearer token is not valid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the bearer token's subject is empty")
        return Identity(
            name=subject[:128],
            scopes=_scopes(claims.get(self.scopes_claim)),
            kind="jwt",
            expires_at=float(claims["exp"]) + self.leeway,  # required above: a number
        )

    def _key_for(self, header: dict[str, Any]) -> Any:
        if header.get("alg") not in self.algorithms:
            raise jwt.InvalidAlgorithmError("not allowed")
        if self.jwks is None:
            return self.key
        kid = header.get("kid")
        if kid is None and len(self.jwks.keys) == 1:
            return self.jwks.keys[0].key
        for candidate in self.jwks.keys:
            if candidate.key_id == kid:
                return candidate.key
        raise jwt.InvalidKeyError("no key with that kid")


def _scopes(claim: object) -> frozenset[str]:
    if isinstance(claim, str):
        names = claim.split()
    elif isinstance(claim, list):
        names = [name for name in claim if isinstance(name, str)]
    else:
        names = []
    return frozenset(names) & ALL_SCOPES
