"""security_from_environ and the keys file: loud, one-line ConfigErrors that leak no secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.env import EnvReader
from gateway.errors import ConfigError
from gateway.security.api_keys import hash_key, load_keys, new_key
from gateway.security.config import SecuritySettings, security_from_environ
from gateway.security.identity import PINS, READ
from tests.security_helpers import (
    AUDIENCE,
    ISSUER,
    claims,
    jwk_for,
    private_pem,
    public_pem,
    sign,
)

SECRET_LOOKING = "pbxgw_TOPSECRET-do-not-print-me-0123456789abcdef"


def security(**env: str) -> SecuritySettings:
    return security_from_environ(EnvReader(env))


def config_error(**env: str) -> str:
    """The ConfigError message for ``env``; checked to be one line."""
    with pytest.raises(ConfigError) as info:
        security(**env)
    message = info.value.message
    assert "\n" not in message
    return message


def keys_file(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "keys.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return str(path)


def entry(name: str = "wallboard", **changes: Any) -> dict[str, Any]:
    return {"name": name, "sha256": hash_key(new_key()), "scopes": [READ], **changes}


def jwt_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """GATEWAY_AUTH=jwt with the issuer's public key file, audience and issuer."""
    key = tmp_path / "issuer.pem"
    key.write_bytes(public_pem("issuer"))
    return {
        "GATEWAY_AUTH": "jwt",
        "GATEWAY_JWT_PUBLIC_KEY_FILE": str(key),
        "GATEWAY_JWT_AUDIENCE": AUDIENCE,
        "GATEWAY_JWT_ISSUER": ISSUER,
        **env,
    }


# --- GATEWAY_AUTH ------------------------------------------------------------------------


def test_security_auth_unset_is_a_config_error_naming_it() -> None:
    """No GATEWAY_AUTH: running without authentication must be chosen, never defaulted."""
    message = config_error()
    assert "GATEWAY_AUTH" in message
    assert "none" in message  # the choices are listed


def test_security_auth_unknown_mode_is_refused() -> None:
    """A mode that does not exist names the variable and the modes that do."""
    assert "GATEWAY_AUTH" in config_error(GATEWAY_AUTH="basic")


def test_security_auth_none_has_safe_defaults() -> None:
    """none: read-only anonymous scope, no IDE, no introspection, no CORS, no batching."""
    loaded = security(GATEWAY_AUTH="none")
    assert loaded.auth == "none"
    assert loaded.anonymous_scopes == frozenset({READ})
    assert (loaded.graphiql, loaded.introspection, loaded.batching) == (False, False, False)
    assert loaded.cors_origins == ()


def test_security_unknown_anonymous_scope_is_refused() -> None:
    """GATEWAY_ANONYMOUS_SCOPES with a name that is not a scope names the variable."""
    message = config_error(GATEWAY_AUTH="none", GATEWAY_ANONYMOUS_SCOPES="conferences:all")
    assert "GATEWAY_ANONYMOUS_SCOPES" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_MAX_DEPTH", "1"),
        ("GATEWAY_MAX_ALIASES", "0"),
        ("GATEWAY_MAX_TOKENS", "10"),
        ("GATEWAY_MAX_SELECTIONS", "0"),
        ("GATEWAY_MAX_FRAGMENT_SPREADS", "-1"),
        ("GATEWAY_MAX_BODY_BYTES", "100"),
        ("GATEWAY_RATE_LIMIT", "0"),
        ("GATEWAY_MISS_BURST", "0.5"),
    ],
)
def test_security_limits_below_their_minimum_are_refused(name: str, value: str) -> None:
    """A limit set so low it disables the gateway (or a limit) names its variable."""
    assert name in config_error(GATEWAY_AUTH="none", **{name: value})


def test_security_request_rate_limit_is_off_unless_configured() -> None:
    """No GATEWAY_RATE_LIMIT: no request budget; the PBX-fetch budget stays on (1/s, 10)."""
    loaded = security(GATEWAY_AUTH="none")
    assert (loaded.rate, loaded.burst) == (None, None)
    assert (loaded.miss_rate, loaded.miss_burst) == (1.0, 10.0)


def test_security_request_rate_limit_opts_in_with_its_burst() -> None:
    """GATEWAY_RATE_LIMIT turns the request budget on; GATEWAY_RATE_BURST sizes it."""
    loaded = security(GATEWAY_AUTH="none", GATEWAY_RATE_LIMIT="50", GATEWAY_RATE_BURST="80")
    assert (loaded.rate, loaded.burst) == (50.0, 80.0)
    assert security(GATEWAY_AUTH="none", GATEWAY_RATE_LIMIT="5").burst is None  # 2x rate


def test_security_request_burst_without_a_rate_is_refused() -> None:
    """GATEWAY_RATE_BURST alone would silently do nothing: a one-line error naming both."""
    message = config_error(GATEWAY_AUTH="none", GATEWAY_RATE_BURST="100")
    assert "GATEWAY_RATE_BURST" in message
    assert "GATEWAY_RATE_LIMIT" in message


def test_security_document_budget_is_read_with_its_defaults() -> None:
    """GATEWAY_MAX_SELECTIONS and GATEWAY_MAX_FRAGMENT_SPREADS: 300 and 100 unless set."""
    defaults = security(GATEWAY_AUTH="none")
    assert (defaults.max_selections, defaults.max_spreads) == (300, 100)
    chosen = security(
        GATEWAY_AUTH="none", GATEWAY_MAX_SELECTIONS="1000", GATEWAY_MAX_FRAGMENT_SPREADS="0"
    )
    assert (chosen.max_selections, chosen.max_spreads) == (1000, 0)


# --- api-key -------------------------------------------------------------------------------


def test_security_api_key_mode_without_keys_file_is_refused() -> None:
    """api-key mode needs GATEWAY_API_KEYS_FILE."""
    assert "GATEWAY_API_KEYS_FILE" in config_error(GATEWAY_AUTH="api-key")


def test_security_api_key_mode_loads_the_keys_file(tmp_path: Path) -> None:
    """A good keys file gives one stored key per entry, with its scopes and no plain key."""
    path = keys_file(tmp_path, {"keys": [entry("wallboard"), entry("ops", scopes=[READ, PINS])]})
    loaded = security(GATEWAY_AUTH="api-key", GATEWAY_API_KEYS_FILE=path)
    assert [(k.name, k.scopes) for k in loaded.api_keys] == [
        ("wallboard", frozenset({READ})),
        ("ops", frozenset({READ, PINS})),
    ]


def test_security_keys_file_with_bad_json_is_refused_without_its_content(tmp_path: Path) -> None:
    """Unparsable JSON names the variable and never prints the file (it may hold a key)."""
    path = keys_file(tmp_path, '{"keys": [{"name": "x", "sha256": "' + SECRET_LOOKING + '"')
    message = config_error(GATEWAY_AUTH="api-key", GATEWAY_API_KEYS_FILE=path)
    assert "GATEWAY_API_KEYS_FILE" in message
    assert SECRET_LOOKING not in message


@pytest.mark.parametrize(
    "sha256",
    [SECRET_LOOKING, "A" * 64, "0" * 63, "g" * 64, 12345],
    ids=["the-plain-key", "upper-case", "63-hex", "not-hex", "a-number"],
)
def test_security_keys_file_with_bad_sha256_names_the_entry(tmp_path: Path, sha256: Any) -> None:
    """A sha256 that is not 64 lower-case hex names keys[i].sha256 and never echoes it."""
    path = keys_file(tmp_path, {"keys": [entry("a"), entry("b", sha256=sha256)]})
    message = config_error(GATEWAY_AUTH="api-key", GATEWAY_API_KEYS_FILE=path)
    assert "keys[1].sha256" in message
    assert str(sha256) not in message


def test_security_keys_file_with_unknown_scope_names_the_entry(tmp_path: Path) -> None:
    """An unknown scope names keys[i].scopes, the unknown name, and the known ones."""
    path = keys_file(tmp_path, {"keys": [entry(scopes=[READ, "conferences:admin"])]})
    message = config_error(GATEWAY_AUTH="api-key", GATEWAY_API_KEYS_FILE=path)
    assert "keys[0].scopes" in message
    assert "conferences:admin" in message
    assert PINS in message


def test_security_keys_file_with_duplicate_names_names_the_entry(tmp_path: Path) -> None:
    """Two keys with one name are refused, saying which entry (or name) repeats."""
    path = keys_file(tmp_path, {"keys": [entry("wallboard"), entry("wallboard")]})
    message = config_error(GATEWAY_AUTH="api-key", GATEWAY_API_KEYS_FILE=path)
    assert "GATEWAY_API_KEYS_FILE" in message
    assert "keys[1]" in message or "'wallboard'" in message, message


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ({"keys": []}, "at least one key"),
        ({"wallboard": "x"}, "at least one key"),
        ({"keys": ["just-a-string"]}, "keys[0]"),
        ({"keys": [entry(name="has space")]}, "keys[0].name"),
        ({"keys": [entry(scopes=READ)]}, "keys[0].scopes"),
    ],
    ids=["empty-list", "no-keys-member", "entry-not-object", "bad-name", "scopes-not-list"],
)
def test_security_keys_file_shape_errors_name_the_place(
    tmp_path: Path, content: Any, where: str
) -> None:
    """Each malformed shape is refused with a message pointing at the wrong place."""
    path = keys_file(tmp_path, content)
    assert where in config_error(GATEWAY_AUTH="api-key", GATEWAY_API_KEYS_FILE=path)


def test_security_load_keys_round_trips_a_made_key(tmp_path: Path) -> None:
    """A key from new_key, stored as hash_key, is found again by load_keys."""
    plain = new_key()
    path = keys_file(tmp_path, {"keys": [entry(sha256=hash_key(plain))]})
    (stored,) = load_keys(Path(path))
    assert stored.digest.hex() == hash_key(plain)
    assert plain.startswith("pbxgw_") and len(plain) >= 40


# --- jwt -----------------------------------------------------------------------------------


def test_security_jwt_public_key_file_verifies_tokens(tmp_path: Path) -> None:
    """jwt with a PEM public key: RS256 tokens of that key are accepted."""
    loaded = security(**jwt_env(tmp_path))
    assert loaded.jwt is not None
    assert loaded.jwt.algorithms == ("RS256",)
    assert loaded.jwt.identify(sign(claims())).name == "wallboard-service"


def test_security_jwt_jwks_file_verifies_tokens(tmp_path: Path) -> None:
    """jwt with a JWKS file: tokens whose kid is in the set are accepted."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_for("issuer", "k1")]}), "utf-8")
    env = jwt_env(tmp_path)
    del env["GATEWAY_JWT_PUBLIC_KEY_FILE"]
    loaded = security(**env, GATEWAY_JWT_JWKS_FILE=str(jwks))
    assert loaded.jwt is not None
    assert loaded.jwt.identify(sign(claims(), headers={"kid": "k1"})).kind == "jwt"


@pytest.mark.parametrize("algorithms", ["HS256", "RS256,HS256", "none", "RS256 none"])
def test_security_jwt_public_key_with_hmac_or_none_is_refused(
    tmp_path: Path, algorithms: str
) -> None:
    """HMAC (or 'none') beside a public key is the key-confusion setup: refused at start."""
    message = config_error(**jwt_env(tmp_path, GATEWAY_JWT_ALGORITHMS=algorithms))
    assert "GATEWAY_JWT_ALGORITHMS" in message


def test_security_jwt_needs_exactly_one_key_source(tmp_path: Path) -> None:
    """No key source, or two, is refused naming the three variables."""
    env = jwt_env(tmp_path)
    del env["GATEWAY_JWT_PUBLIC_KEY_FILE"]
    assert "GATEWAY_JWT_PUBLIC_KEY_FILE" in config_error(**env)
    secret = tmp_path / "secret"
    secret.write_text("s" * 40, "utf-8")
    two = jwt_env(tmp_path, GATEWAY_JWT_SECRET_FILE=str(secret))
    assert "exactly one" in config_error(**two)


@pytest.mark.parametrize("missing", ["GATEWAY_JWT_AUDIENCE", "GATEWAY_JWT_ISSUER"])
def test_security_jwt_audience_and_issuer_are_required(tmp_path: Path, missing: str) -> None:
    """A token check without audience or issuer would accept other services' tokens."""
    env = jwt_env(tmp_path)
    del env[missing]
    assert missing in config_error(**env)


def test_security_jwt_short_secret_is_refused_without_echo(tmp_path: Path) -> None:
    """An HMAC secret under 32 bytes is refused; the message never shows it."""
    secret = tmp_path / "secret"
    secret.write_text("short-Secret-42\n", "utf-8")
    message = config_error(
        GATEWAY_AUTH="jwt",
        GATEWAY_JWT_SECRET_FILE=str(secret),
        GATEWAY_JWT_AUDIENCE=AUDIENCE,
        GATEWAY_JWT_ISSUER=ISSUER,
    )
    assert "GATEWAY_JWT_SECRET_FILE" in message
    assert "short-Secret-42" not in message


def test_security_jwt_unusable_key_file_is_refused_without_echo(tmp_path: Path) -> None:
    """A public key file that holds no key is refused; its content is not printed."""
    env = jwt_env(tmp_path)
    Path(env["GATEWAY_JWT_PUBLIC_KEY_FILE"]).write_text(SECRET_LOOKING, "utf-8")
    message = config_error(**env)
    assert "GATEWAY_JWT_PUBLIC_KEY_FILE" in message
    assert SECRET_LOOKING not in message


def test_security_jwt_private_key_in_public_key_file_is_refused(tmp_path: Path) -> None:
    """The signing key does not belong on the gateway: a private key there is refused."""
    env = jwt_env(tmp_path)
    Path(env["GATEWAY_JWT_PUBLIC_KEY_FILE"]).write_bytes(private_pem("issuer"))
    message = config_error(**env)
    assert "GATEWAY_JWT_PUBLIC_KEY_FILE" in message
    assert "PRIVATE KEY" not in message


# --- CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origins",
    ["*", "https://wallboard.example, *", "https://wallboard.example/", "wallboard.example"],
    ids=["star", "star-in-list", "trailing-path", "no-scheme"],
)
def test_security_cors_wildcards_and_non_origins_are_refused(origins: str) -> None:
    """Only exact origins: '*', paths and scheme-less names are ConfigErrors."""
    message = config_error(GATEWAY_AUTH="none", GATEWAY_CORS_ORIGINS=origins)
    assert "GATEWAY_CORS_ORIGINS" in message


def test_security_cors_exact_origins_are_kept() -> None:
    """A list of exact origins is kept in order."""
    loaded = security(
        GATEWAY_AUTH="none",
        GATEWAY_CORS_ORIGINS="https://wallboard.example, http://localhost:5173",
    )
    assert loaded.cors_origins == ("https://wallboard.example", "http://localhost:5173")
