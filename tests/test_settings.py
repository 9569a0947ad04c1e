"""Settings.from_environ: defaults, the four password variables, and loud one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import HttpLimits, PasswordSource, Settings

PASSWORD = "Tr1cky pass;word"
MD5 = hashlib.md5(PASSWORD.encode()).hexdigest()
BASE = {"PBX_URL": "https://192.168.5.150:8088", "PBX_USERNAME": "api", "GATEWAY_AUTH": "none"}


def settings(**env: str) -> Settings:
    return Settings.from_environ({**BASE, "PBX_PASSWORD": PASSWORD, **env})


def test_settings_compiled_plans_on_by_default_and_switchable() -> None:
    """GATEWAY_COMPILED_PLANS: on unless set to false (then strawberry runs every read)."""
    assert settings().compiled_plans is True
    assert settings(GATEWAY_COMPILED_PLANS="false").compiled_plans is False


def config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_environ(env)
    return info.value


def test_settings_defaults() -> None:
    """With only the required variables, every other setting has its documented default."""
    loaded = settings()
    assert loaded.pbx_url == "https://192.168.5.150:8088"
    assert loaded.pbx_username == "api"
    assert loaded.pbx_verify_tls is True
    assert loaded.pbx_timeout == 10.0
    assert loaded.pbx_max_concurrency == 2
    assert loaded.pbx_max_waiting == 50
    assert loaded.pbx_heartbeat_interval == 1200.0
    assert loaded.pbx_login_cooldown == 600.0
    assert loaded.pbx_lockout_backoff == 600.0
    assert (loaded.pbx_breaker_threshold, loaded.pbx_breaker_cooldown) == (5, 30.0)
    assert loaded.cache_ttl == 30.0
    assert (loaded.stale_ttl, loaded.revalidate_window) == (86_400.0, 30.0)
    assert loaded.cache_max_entries == 50_000
    assert loaded.request_deadline == 15.0
    assert loaded.max_numbers == 100
    assert loaded.batch_size == 100
    assert loaded.shutdown_grace == 25


def test_settings_read_every_variable() -> None:
    """Every numeric variable is read and typed."""
    loaded = settings(
        PBX_TIMEOUT="2.5",
        PBX_MAX_CONCURRENCY="4",
        PBX_HEARTBEAT_INTERVAL="60",
        PBX_LOGIN_COOLDOWN="900",
        PBX_LOCKOUT_BACKOFF="700",
        GATEWAY_CACHE_TTL="5",
        GATEWAY_CACHE_MAX_ENTRIES="10",
        GATEWAY_MAX_NUMBERS="20",
        GATEWAY_BATCH_SIZE="7",
        PBX_MAX_WAITING="0",
        PBX_BREAKER_THRESHOLD="3",
        PBX_BREAKER_COOLDOWN="12.5",
        GATEWAY_STALE_TTL="0",
        GATEWAY_REVALIDATE_WINDOW="2",
        GATEWAY_REQUEST_DEADLINE="4",
        GATEWAY_SHUTDOWN_GRACE="4",
    )
    assert (loaded.pbx_timeout, loaded.pbx_max_concurrency) == (2.5, 4)
    assert (loaded.pbx_heartbeat_interval, loaded.pbx_login_cooldown) == (60.0, 900.0)
    assert loaded.pbx_lockout_backoff == 700.0
    assert (loaded.cache_ttl, loaded.cache_max_entries) == (5.0, 10)
    assert (loaded.max_numbers, loaded.batch_size) == (20, 7)
    assert (loaded.pbx_max_waiting, loaded.pbx_breaker_threshold) == (0, 3)
    assert loaded.pbx_breaker_cooldown == 12.5
    assert (loaded.stale_ttl, loaded.revalidate_window) == (0.0, 2.0)
    assert (loaded.request_deadline, loaded.shutdown_grace) == (4.0, 4)


def test_settings_url_trailing_slash_and_spaces_are_dropped() -> None:
    """PBX_URL is stored without surrounding spaces or a trailing slash."""
    assert settings(PBX_URL="  http://pbx.local:8088/ ").pbx_url == "http://pbx.local:8088"


def test_settings_empty_variable_counts_as_unset() -> None:
    """An empty or blank optional variable means the default."""
    assert settings(PBX_TIMEOUT="", PBX_MAX_CONCURRENCY="  ").pbx_timeout == 10.0


# --- the password, four ways ---------------------------------------------------------------


def password_envs(tmp_path: Path) -> dict[str, dict[str, str]]:
    plain = tmp_path / "password"
    plain.write_text(PASSWORD + "\n", encoding="utf-8")
    hashed = tmp_path / "password.md5"
    hashed.write_text(MD5.upper() + "\r\n", encoding="utf-8")
    return {
        "PBX_PASSWORD": {"PBX_PASSWORD": PASSWORD},
        "PBX_PASSWORD_FILE": {"PBX_PASSWORD_FILE": str(plain)},
        "PBX_PASSWORD_MD5": {"PBX_PASSWORD_MD5": MD5.upper()},
        "PBX_PASSWORD_MD5_FILE": {"PBX_PASSWORD_MD5_FILE": str(hashed)},
    }


@pytest.mark.parametrize(
    "variable", ["PBX_PASSWORD", "PBX_PASSWORD_FILE", "PBX_PASSWORD_MD5", "PBX_PASSWORD_MD5_FILE"]
)
def test_settings_each_password_variable_gives_same_md5(tmp_path: Path, variable: str) -> None:
    """Each of the four password variables yields the same lower-case MD5."""
    loaded = Settings.from_environ({**BASE, **password_envs(tmp_path)[variable]})
    assert loaded.pbx_password.current_md5().reveal() == MD5


def test_settings_password_file_is_reread_after_rotation(tmp_path: Path) -> None:
    """A password file is read again on each use, so a rotated secret applies."""
    path = tmp_path / "password"
    path.write_text("old", encoding="utf-8")
    loaded = Settings.from_environ({**BASE, "PBX_PASSWORD_FILE": str(path)})
    path.write_text(PASSWORD, encoding="utf-8")
    assert loaded.pbx_password.current_md5().reveal() == MD5


def test_settings_password_keeps_inner_and_outer_spaces() -> None:
    """PBX_PASSWORD is hashed exactly as given: spaces are part of a password."""
    loaded = settings(PBX_PASSWORD=" padded ")
    expected = hashlib.md5(b" padded ").hexdigest()
    assert loaded.pbx_password.current_md5().reveal() == expected


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("PBX_PASSWORD", "PBX_PASSWORD_FILE"),
        ("PBX_PASSWORD", "PBX_PASSWORD_MD5"),
        ("PBX_PASSWORD_FILE", "PBX_PASSWORD_MD5_FILE"),
        ("PBX_PASSWORD_MD5", "PBX_PASSWORD_MD5_FILE"),
    ],
)
def test_settings_two_passwords_name_both(tmp_path: Path, first: str, second: str) -> None:
    """Two password variables at once is a ConfigError naming both."""
    envs = password_envs(tmp_path)
    error = config_error({**BASE, **envs[first], **envs[second]})
    assert first in error.message
    assert second in error.message


def test_settings_no_password_names_pbx_password() -> None:
    """No password variable at all is a ConfigError naming PBX_PASSWORD."""
    assert "PBX_PASSWORD" in config_error(dict(BASE)).message


@pytest.mark.parametrize("value", ["abc", "0" * 31, "g" * 32, "0" * 33])
def test_settings_malformed_md5_is_refused(value: str) -> None:
    """PBX_PASSWORD_MD5 must be 32 hex characters."""
    error = config_error({**BASE, "PBX_PASSWORD_MD5": value})
    assert "PBX_PASSWORD_MD5" in error.message
    assert value not in error.message


def test_settings_malformed_md5_file_is_refused(tmp_path: Path) -> None:
    """A PBX_PASSWORD_MD5_FILE holding something else than an MD5 is refused at start-up."""
    path = tmp_path / "md5"
    path.write_text("hunter2", encoding="utf-8")
    error = config_error({**BASE, "PBX_PASSWORD_MD5_FILE": str(path)})
    assert "PBX_PASSWORD_MD5_FILE" in error.message
    assert "hunter2" not in error.message


@pytest.mark.parametrize("variable", ["PBX_PASSWORD_FILE", "PBX_PASSWORD_MD5_FILE"])
def test_settings_missing_password_file_is_refused(tmp_path: Path, variable: str) -> None:
    """A password file that does not exist fails at start-up, naming the variable."""
    error = config_error({**BASE, variable: str(tmp_path / "absent")})
    assert variable in error.message


def test_settings_empty_password_file_is_refused(tmp_path: Path) -> None:
    """A password file holding only a newline is refused."""
    path = tmp_path / "password"
    path.write_text("\n", encoding="utf-8")
    assert "PBX_PASSWORD_FILE" in config_error({**BASE, "PBX_PASSWORD_FILE": str(path)}).message


def test_password_source_without_anything_is_config_error() -> None:
    """A PasswordSource with neither value nor file refuses to give an MD5."""
    with pytest.raises(ConfigError):
        PasswordSource().current_md5()


# --- malformed values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PBX_TIMEOUT", "ten"),
        ("PBX_TIMEOUT", "0"),
        ("PBX_TIMEOUT", "nan"),
        ("PBX_TIMEOUT", "-1"),
        ("PBX_MAX_CONCURRENCY", "2.5"),
        ("PBX_MAX_CONCURRENCY", "0"),
        ("PBX_MAX_CONCURRENCY", "two"),
        ("PBX_HEARTBEAT_INTERVAL", "0.5"),
        ("PBX_LOGIN_COOLDOWN", "x"),
        ("PBX_LOCKOUT_BACKOFF", "0"),
        ("GATEWAY_CACHE_TTL", "0"),
        ("GATEWAY_SESSION_TTL", "0"),
        ("GATEWAY_CACHE_MAX_ENTRIES", "1e3"),
        ("GATEWAY_MAX_NUMBERS", "-5"),
        ("GATEWAY_BATCH_SIZE", "0"),
        ("PBX_MAX_WAITING", "-1"),
        ("PBX_BREAKER_THRESHOLD", "0"),
        ("PBX_BREAKER_COOLDOWN", "0"),
        ("GATEWAY_STALE_TTL", "-1"),
        ("GATEWAY_REVALIDATE_WINDOW", "soon"),
        ("GATEWAY_REQUEST_DEADLINE", "0"),
        ("GATEWAY_SHUTDOWN_GRACE", "1.5"),
    ],
)
def test_settings_malformed_number_names_variable(variable: str, value: str) -> None:
    """A malformed or too small number is a one-line ConfigError naming its variable."""
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, variable: value})
    assert error.message.startswith(variable)
    assert value in error.message
    assert "\n" not in error.message


@pytest.mark.parametrize("variable", ["PBX_URL", "PBX_USERNAME"])
def test_settings_missing_required_variable_names_it(variable: str) -> None:
    """A missing PBX_URL or PBX_USERNAME is a ConfigError naming it."""
    env = {**BASE, "PBX_PASSWORD": PASSWORD}
    del env[variable]
    assert variable in config_error(env).message
    env[variable] = "   "
    assert variable in config_error(env).message


@pytest.mark.parametrize(
    "url", ["ftp://pbx:8088", "192.168.5.150:8088", "pbx.local", "https://", "file:///etc/passwd"]
)
def test_settings_bad_url_scheme_is_refused(url: str) -> None:
    """PBX_URL must be http(s) with a host."""
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "PBX_URL": url})
    assert "PBX_URL" in error.message
    assert "http" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://pbx:8088/?token=abc",
        "https://pbx:8088/api?x=1",
        "https://pbx:8088/#top",
        "https://admin:pw@pbx:8088",
    ],
)
def test_settings_url_with_query_fragment_or_credentials_is_refused(url: str) -> None:
    """PBX_URL with a query, a fragment or credentials is refused without echoing them."""
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "PBX_URL": url})
    assert "PBX_URL" in error.message
    assert "token=abc" not in error.message
    assert "pw@" not in error.message


def test_settings_bad_scheme_url_does_not_echo_credentials() -> None:
    """A mistyped scheme on a URL with credentials does not print those credentials."""
    url = "htps://admin:S3cretPw@pbx:8088"
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "PBX_URL": url})
    assert "PBX_URL" in error.message
    assert "S3cretPw" not in error.message


# --- TLS verification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("off", False)],
)
def test_settings_verify_tls_true_false(value: str, expected: bool) -> None:
    """PBX_VERIFY_TLS accepts the usual spellings of true and false."""
    assert settings(PBX_VERIFY_TLS=value).pbx_verify_tls is expected


def test_settings_verify_tls_ca_file_path(tmp_path: Path) -> None:
    """PBX_VERIFY_TLS may be the path of an existing CA file, kept as the path."""
    ca = tmp_path / "pbx-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    assert settings(PBX_VERIFY_TLS=str(ca)).pbx_verify_tls == str(ca)


@pytest.mark.parametrize("value", ["/nonexistent/ca.pem", "maybe", "."])
def test_settings_verify_tls_nonexistent_path_is_refused(value: str) -> None:
    """A PBX_VERIFY_TLS that is neither a boolean nor an existing file is refused."""
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "PBX_VERIFY_TLS": value})
    assert error.message.startswith("PBX_VERIFY_TLS")


# --- every message, and what never shows ---------------------------------------------------


def bad_environments(tmp_path: Path) -> dict[str, dict[str, str]]:
    """One broken environment per variable that can be wrong, keyed by that variable."""
    ok = {**BASE, "PBX_PASSWORD": PASSWORD}
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    return {
        "PBX_URL": {**ok, "PBX_URL": "ftp://x\ny"},
        "PBX_USERNAME": {k: v for k, v in ok.items() if k != "PBX_USERNAME"},
        "PBX_PASSWORD": dict(BASE),
        "PBX_PASSWORD_FILE": {**BASE, "PBX_PASSWORD_FILE": str(empty)},
        "PBX_PASSWORD_MD5": {**BASE, "PBX_PASSWORD_MD5": "nope"},
        "PBX_PASSWORD_MD5_FILE": {**BASE, "PBX_PASSWORD_MD5_FILE": str(tmp_path / "none")},
        "PBX_VERIFY_TLS": {**ok, "PBX_VERIFY_TLS": "/no/such\nfile"},
        "PBX_TIMEOUT": {**ok, "PBX_TIMEOUT": "1\n2"},
        "PBX_MAX_CONCURRENCY": {**ok, "PBX_MAX_CONCURRENCY": "0"},
        "PBX_HEARTBEAT_INTERVAL": {**ok, "PBX_HEARTBEAT_INTERVAL": "soon"},
        "PBX_LOGIN_COOLDOWN": {**ok, "PBX_LOGIN_COOLDOWN": "0"},
        "PBX_LOCKOUT_BACKOFF": {**ok, "PBX_LOCKOUT_BACKOFF": "inf-"},
        "GATEWAY_CACHE_TTL": {**ok, "GATEWAY_CACHE_TTL": "-1"},
        "GATEWAY_CACHE_MAX_ENTRIES": {**ok, "GATEWAY_CACHE_MAX_ENTRIES": "many"},
        "GATEWAY_MAX_NUMBERS": {**ok, "GATEWAY_MAX_NUMBERS": "0"},
        "GATEWAY_BATCH_SIZE": {**ok, "GATEWAY_BATCH_SIZE": "1.5"},
        "PBX_MAX_WAITING": {**ok, "PBX_MAX_WAITING": "x\ny"},
        "PBX_BREAKER_THRESHOLD": {**ok, "PBX_BREAKER_THRESHOLD": "0"},
        "PBX_BREAKER_COOLDOWN": {**ok, "PBX_BREAKER_COOLDOWN": "nan"},
        "GATEWAY_STALE_TTL": {**ok, "GATEWAY_STALE_TTL": "-5"},
        "GATEWAY_REVALIDATE_WINDOW": {**ok, "GATEWAY_REVALIDATE_WINDOW": "a"},
        "GATEWAY_REQUEST_DEADLINE": {**ok, "GATEWAY_REQUEST_DEADLINE": "0"},
        "GATEWAY_SHUTDOWN_GRACE": {**ok, "GATEWAY_SHUTDOWN_GRACE": "-1"},
    }


def test_settings_every_config_error_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    """Each ConfigError message is a single line that names the variable at fault."""
    for variable, env in bad_environments(tmp_path).items():
        message = config_error(env).message
        assert "\n" not in message, (variable, message)
        assert variable in message, (variable, message)


def test_settings_repr_and_str_hide_password_and_md5(tmp_path: Path) -> None:
    """repr() and str() of settings show neither the password nor its MD5, however given."""
    for env in password_envs(tmp_path).values():
        loaded = Settings.from_environ({**BASE, **env})
        for text in (repr(loaded), str(loaded), repr(loaded.pbx_password)):
            assert PASSWORD not in text
            assert MD5 not in text
            assert MD5.upper() not in text


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after reading."""
    loaded = settings()
    with pytest.raises(AttributeError):
        loaded.pbx_url = "http://elsewhere"  # type: ignore[misc]


def test_settings_trusted_proxies_are_read_as_a_list() -> None:
    """GATEWAY_TRUSTED_PROXIES lists the proxies whose X-Forwarded-For is believed."""
    read = settings(GATEWAY_TRUSTED_PROXIES="10.0.0.1, 10.0.0.2")
    assert read.security.trusted_proxies == ("10.0.0.1", "10.0.0.2")


@pytest.mark.parametrize(
    "url",
    [
        "https://192.168.5.150:8088/api/v2.0.0",
        "https://192.168.5.150:8088/api/v2.0.0/",
        "https://192.168.5.150:8088/api",
    ],
)
def test_settings_url_with_a_path_is_refused_saying_what_to_write(url: str) -> None:
    """PBX_URL ending in /api/v2.0.0 (or any path) is refused at load, before any login,
    with one line that says what to write instead."""
    message = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "PBX_URL": url}).message
    assert "\n" not in message
    assert "PBX_URL" in message
    assert "write https://192.168.5.150:8088 instead" in message


def test_settings_http_limits_defaults_and_variables() -> None:
    """The HTTP server's limits: safe defaults, each one set by its own variable."""
    assert settings().http_limits == HttpLimits(
        max_header_bytes=81_920,
        max_headers=100,
        header_timeout=10.0,
        body_timeout=20.0,
        max_connections=512,
        max_connections_per_address=256,
        keep_alive_timeout=5,
    )
    loaded = settings(
        GATEWAY_MAX_HEADER_BYTES="16384",
        GATEWAY_MAX_HEADERS="50",
        GATEWAY_HEADER_TIMEOUT="2.5",
        GATEWAY_BODY_TIMEOUT="4",
        GATEWAY_MAX_CONNECTIONS="64",
        GATEWAY_MAX_CONNECTIONS_PER_ADDRESS="8",
        GATEWAY_KEEP_ALIVE_TIMEOUT="2",
    )
    assert loaded.http_limits == HttpLimits(
        max_header_bytes=16_384,
        max_headers=50,
        header_timeout=2.5,
        body_timeout=4.0,
        max_connections=64,
        max_connections_per_address=8,
        keep_alive_timeout=2,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_MAX_HEADER_BYTES", "100"),
        ("GATEWAY_MAX_HEADERS", "many"),
        ("GATEWAY_HEADER_TIMEOUT", "0"),
        ("GATEWAY_BODY_TIMEOUT", "inf"),
        ("GATEWAY_MAX_CONNECTIONS", "0"),
        ("GATEWAY_MAX_CONNECTIONS_PER_ADDRESS", "-3"),
        ("GATEWAY_KEEP_ALIVE_TIMEOUT", "0.5"),
    ],
)
def test_settings_bad_http_limit_names_variable(variable: str, value: str) -> None:
    """A malformed or too small HTTP limit is a one-line ConfigError naming its variable."""
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, variable: value})
    assert error.message.startswith(variable)
    assert "\n" not in error.message


def test_settings_response_cache_bytes() -> None:
    """GATEWAY_RESPONSE_CACHE_BYTES: 32 MiB by default, 0 allowed (off), never negative."""
    assert settings().response_cache_bytes == 32 * 1024 * 1024
    assert settings(GATEWAY_RESPONSE_CACHE_BYTES="0").response_cache_bytes == 0
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "GATEWAY_RESPONSE_CACHE_BYTES": "-1"})
    assert error.message.startswith("GATEWAY_RESPONSE_CACHE_BYTES")


def test_settings_shutdown_grace_covers_the_request_deadline() -> None:
    """The default grace is the request deadline plus one PBX call, following both; a
    grace shorter than the deadline is a one-line ConfigError naming both variables."""
    assert settings().shutdown_grace == 25
    assert settings(GATEWAY_REQUEST_DEADLINE="30", PBX_TIMEOUT="5").shutdown_grace == 35
    assert settings(GATEWAY_REQUEST_DEADLINE="2.5", PBX_TIMEOUT="1").shutdown_grace == 4
    assert settings(GATEWAY_SHUTDOWN_GRACE="15").shutdown_grace == 15
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "GATEWAY_SHUTDOWN_GRACE": "10"})
    assert error.message.startswith("GATEWAY_SHUTDOWN_GRACE (10)")
    assert "GATEWAY_REQUEST_DEADLINE (15)" in error.message
    assert "\n" not in error.message


def test_settings_live_lease_ttl() -> None:
    """GATEWAY_LIVE_LEASE_TTL: 10 s by default; under a second is a ConfigError naming it."""
    assert settings().live_lease_ttl == 10.0
    assert settings(GATEWAY_LIVE_LEASE_TTL="2.5").live_lease_ttl == 2.5
    error = config_error({**BASE, "PBX_PASSWORD": PASSWORD, "GATEWAY_LIVE_LEASE_TTL": "0.5"})
    assert error.message.startswith("GATEWAY_LIVE_LEASE_TTL") and "0.5" in error.message
