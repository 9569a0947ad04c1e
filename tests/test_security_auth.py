"""Client authentication end to end: each GATEWAY_AUTH mode through the real gateway.

Every refusal is checked for its status, its one coded error, the WWW-Authenticate
challenge, that the presented credential is not echoed, and that the PBX saw no query.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.security.identity import PINS, READ, WRITE
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import (
    ISSUER,
    ROOM_ANSWER,
    ROOM_QUERY,
    Keys,
    anonymous_security,
    api_key_security,
    bearer,
    claims,
    codes,
    forge,
    jwks_for,
    jwt_verifier,
    public_pem,
    refusal,
    sign,
    write_keys,
)

CHALLENGE = 'Bearer realm="pbx-gateway"'


async def post(stack: Stack, headers: dict[str, str], query: str = ROOM_QUERY) -> Any:
    """POST one document with ``headers``; the raw response."""
    return await stack.client.post("/graphql", json={"query": query}, headers=headers)


def assert_unauthenticated(response: Any, stack: Stack, *secrets: str) -> str:
    """401 UNAUTHENTICATED with the challenge, nothing echoed, and no PBX query made."""
    message = refusal(response, 401, "UNAUTHENTICATED")
    assert response.headers["www-authenticate"] == CHALLENGE
    for secret in secrets:
        assert secret not in response.text
    assert stack.calls() == 0
    return message


# --- api-key -------------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """A keys file with a read-only key and a read+PINs key."""
    return write_keys(tmp_path, {"wallboard": [READ], "operator": [READ, PINS]})


async def test_api_key_in_x_api_key_header_is_accepted(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """A valid key in X-API-Key reads conferences."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    response = await post(stack, {"X-API-Key": plain["wallboard"]})
    assert response.status_code == 200
    assert response.json() == ROOM_ANSWER


async def test_api_key_as_bearer_token_is_accepted(gateway_stack: StackFactory, keys: Keys) -> None:
    """A valid key sent as 'Authorization: Bearer <key>' reads conferences."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    response = await post(stack, bearer(plain["operator"]))
    assert response.status_code == 200
    assert response.json() == ROOM_ANSWER


API_KEY_REFUSALS: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "missing": lambda plain: {},
    "empty-x-api-key": lambda plain: {"X-API-Key": ""},
    "wrong-x-api-key": lambda plain: {"X-API-Key": "pbxgw_" + "A" * 43},
    "wrong-bearer": lambda plain: bearer("pbxgw_" + "B" * 43),
    "truncated-key": lambda plain: {"X-API-Key": plain["wallboard"][:-1]},
    "key-hash-instead-of-key": lambda plain: {
        "X-API-Key": hashlib.sha256(plain["wallboard"].encode()).hexdigest()
    },
    "basic-scheme": lambda plain: {"Authorization": f"Basic {plain['wallboard']}"},
    "bearer-without-value": lambda plain: {"Authorization": "Bearer"},
}


@pytest.mark.parametrize("case", sorted(API_KEY_REFUSALS))
async def test_api_key_missing_or_wrong_is_refused_with_401(
    gateway_stack: StackFactory, keys: Keys, case: str
) -> None:
    """No key, an empty, wrong, truncated or hashed key, or another scheme: 401, no PBX call."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    headers = API_KEY_REFUSALS[case](plain)
    response = await post(stack, headers)
    presented = [value for value in headers.values() if len(value) > 10]
    message = assert_unauthenticated(response, stack, *presented)
    assert "API key" in message


async def test_api_key_missing_and_wrong_have_distinct_messages(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """'No key sent' and 'this key is not valid' are told apart, so clients fix the right one."""
    stored, _ = keys
    stack = await gateway_stack(security=api_key_security(stored))
    missing = refusal(await post(stack, {}), 401, "UNAUTHENTICATED")
    wrong = refusal(await post(stack, {"X-API-Key": "nope"}), 401, "UNAUTHENTICATED")
    assert missing != wrong


async def test_api_key_wrong_x_api_key_is_not_rescued_by_a_good_bearer(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """One credential is judged, never the best of two: a wrong X-API-Key fails the request."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    headers = {"X-API-Key": "pbxgw_wrong", **bearer(plain["operator"])}
    assert_unauthenticated(await post(stack, headers), stack, plain["operator"])


async def test_api_key_refusals_never_reach_graphql_parsing(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """An unauthenticated request with a broken document is 401, not a GraphQL parse error."""
    stored, _ = keys
    stack = await gateway_stack(security=api_key_security(stored))
    response = await stack.client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_unauthenticated(response, stack)


async def test_api_key_identities_carry_only_their_own_scopes(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A write-only key cannot read: the key's scopes, not the mode, decide."""
    stored, plain = write_keys(tmp_path, {"writer": [WRITE]})
    stack = await gateway_stack(security=api_key_security(stored))
    body = (await post(stack, {"X-API-Key": plain["writer"]})).json()
    assert codes(body) == ["FORBIDDEN"]
    assert body["data"] == {"conference": None}
    assert stack.calls() == 0


# --- jwt -----------------------------------------------------------------------------------


async def jwt_stack(gateway_stack: StackFactory, **verifier: Any) -> Stack:
    """A gateway in JWT mode verifying RS256 tokens from the ``issuer`` key."""
    security = dataclasses.replace(api_key_security(()), auth="jwt", jwt=jwt_verifier(**verifier))
    return await gateway_stack(security=security)


async def test_jwt_valid_token_is_accepted(gateway_stack: StackFactory) -> None:
    """An RS256 token with the right key, audience, issuer and expiry reads conferences."""
    stack = await jwt_stack(gateway_stack)
    response = await post(stack, bearer(sign(claims())))
    assert response.status_code == 200
    assert response.json() == ROOM_ANSWER


async def test_jwt_expired_within_leeway_is_accepted(gateway_stack: StackFactory) -> None:
    """A token that expired a few seconds ago passes within the configured leeway (30 s)."""
    stack = await jwt_stack(gateway_stack)
    token = sign(claims(exp=int(time.time()) - 5))
    assert (await post(stack, bearer(token))).json() == ROOM_ANSWER


async def test_jwt_from_jwks_is_picked_by_kid(gateway_stack: StackFactory) -> None:
    """With a JWKS, the token's kid picks the key; an unknown kid is refused."""
    stack = await jwt_stack(gateway_stack, key=None, jwks=jwks_for("issuer", "k1"))
    good = sign(claims(), headers={"kid": "k1"})
    unknown = sign(claims(), headers={"kid": "k2"})
    assert (await post(stack, bearer(good))).json() == ROOM_ANSWER
    calls = stack.calls()
    response = await post(stack, bearer(unknown))
    refusal(response, 401, "UNAUTHENTICATED")
    assert unknown not in response.text
    assert stack.calls() == calls


def _hs256_with_public_key() -> str:
    """The key-confusion attack: HS256 signed with the issuer's public PEM as the secret."""
    return forge({"alg": "HS256", "typ": "JWT"}, claims(), public_pem("issuer"))


def _alg_none() -> str:
    """An unsigned token claiming ``alg: none``."""
    return forge({"alg": "none", "typ": "JWT"}, claims(), None)


JWT_REFUSALS: dict[str, tuple[Callable[[], str | None], str]] = {
    "missing": (lambda: None, "needs a bearer token"),
    "wrong-signature": (lambda: sign(claims(), label="attacker"), "not valid"),
    "expired": (lambda: sign(claims(exp=int(time.time()) - 3600)), "expired"),
    "wrong-audience": (lambda: sign(claims(aud="another-service")), "audience"),
    "wrong-issuer": (lambda: sign(claims(iss="https://evil.example")), "issuer"),
    "hs256-key-confusion": (_hs256_with_public_key, "algorithm"),
    "alg-none": (_alg_none, "algorithm"),
    "missing-sub": (lambda: sign(claims(sub=None)), "'sub'"),
    "missing-exp": (lambda: sign(claims(exp=None)), "'exp'"),
    "garbage": (lambda: "not.a.jwt", "not valid"),
}


@pytest.mark.parametrize("case", sorted(JWT_REFUSALS))
async def test_jwt_bad_token_is_refused_with_401(gateway_stack: StackFactory, case: str) -> None:
    """Each bad or missing token is 401 UNAUTHENTICATED saying why, without echoing it."""
    make, says = JWT_REFUSALS[case]
    stack = await jwt_stack(gateway_stack)
    token = make()
    response = await post(stack, {} if token is None else bearer(token))
    parts = [] if token is None else [token, *token.split(".")[1:]]
    message = assert_unauthenticated(response, stack, *(p for p in parts if len(p) > 10))
    assert says in message


async def test_jwt_refusal_messages_are_distinct(gateway_stack: StackFactory) -> None:
    """Missing, expired, audience, issuer, algorithm, claims, signature: each its own message."""
    stack = await jwt_stack(gateway_stack)
    messages: dict[str, str] = {}
    for case in ("missing", "expired", "wrong-audience", "wrong-issuer", "alg-none"):
        token = JWT_REFUSALS[case][0]()
        response = await post(stack, {} if token is None else bearer(token))
        messages[case] = refusal(response, 401, "UNAUTHENTICATED")
    for case in ("missing-sub", "missing-exp", "wrong-signature"):
        token = JWT_REFUSALS[case][0]()
        assert token is not None
        messages[case] = refusal(await post(stack, bearer(token)), 401, "UNAUTHENTICATED")
    assert len(set(messages.values())) == len(messages), messages


async def test_jwt_scopes_come_from_the_scope_claim(gateway_stack: StackFactory) -> None:
    """Scopes are read from the claim (string or list); unknown names grant nothing."""
    stack = await jwt_stack(gateway_stack)
    pins_query = '{ conference(number: "6401") { participantPassword } }'
    as_list = sign(claims(scope=[READ, PINS]))
    unknown_only = sign(claims(scope="admin root conferences:*"))
    read_only = sign(claims(scope=READ))
    assert (await post(stack, bearer(as_list), pins_query)).json() == {
        "data": {"conference": {"participantPassword": "3201"}}
    }
    assert codes((await post(stack, bearer(read_only), pins_query)).json()) == ["FORBIDDEN"]
    assert codes((await post(stack, bearer(unknown_only), pins_query)).json()) == ["FORBIDDEN"]


async def test_jwt_token_from_another_issuer_key_with_right_claims_is_refused(
    gateway_stack: StackFactory,
) -> None:
    """Right issuer name, audience and kid but signed by another key: refused, no PBX call."""
    stack = await jwt_stack(gateway_stack, key=None, jwks=jwks_for("issuer", "k1"))
    forged = sign(claims(iss=ISSUER), label="attacker", headers={"kid": "k1"})
    assert_unauthenticated(await post(stack, bearer(forged)), stack, forged)


# --- none ----------------------------------------------------------------------------------


async def test_none_mode_anonymous_reads_with_anonymous_scopes(
    gateway_stack: StackFactory,
) -> None:
    """Without authentication anyone reads with the anonymous scopes, and no more."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    assert (await post(stack, {})).json() == ROOM_ANSWER
    pins = (await post(stack, {}, '{ conference(number: "6401") { participantPassword } }')).json()
    assert codes(pins) == ["FORBIDDEN"]


async def test_none_mode_without_scopes_reads_nothing(gateway_stack: StackFactory) -> None:
    """GATEWAY_ANONYMOUS_SCOPES empty: anonymous callers get FORBIDDEN and no PBX call."""
    stack = await gateway_stack(security=anonymous_security([]))
    body = (await post(stack, {})).json()
    assert codes(body) == ["FORBIDDEN"]
    assert stack.calls() == 0


async def test_none_mode_ignores_credentials(gateway_stack: StackFactory) -> None:
    """Junk credentials neither help nor hurt when authentication is off."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    headers = {"X-API-Key": "junk", "Authorization": "Bearer junk.junk.junk"}
    assert (await post(stack, headers)).json() == ROOM_ANSWER
