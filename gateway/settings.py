"""Settings, read once from the environment, typed, and loud when wrong.

``Settings.from_environ(os.environ)`` is the only reader. A missing or malformed
variable raises :class:`~gateway.errors.ConfigError` whose one-line message names it.
Secrets are :class:`~gateway.secrets.Secret`, so ``repr(settings)`` shows none, and
each secret can come from a ``*_FILE`` (container secrets) instead of the variable.

Why over 300 lines: it is the one place a default is written (issue 16), so every
setting's field, default and reader stand here together, one short block each.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gateway.env import FALSE, TRUE, EnvReader, read_secret_file
from gateway.errors import ConfigError
from gateway.secrets import Secret
from gateway.security.config import SecuritySettings, security_from_environ

_MD5_HEX: Final = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class PasswordSource:
    """Where the PBX password comes from; a file is re-read so a rotated secret applies.

    Re-reading matters after the PBX rejected the credentials: the session refuses to
    log in again until the cool-down ends *or* the credentials it would send change.
    """

    md5: Secret | None = None
    path: Path | None = None
    path_holds_md5: bool = False
    clear: Secret | None = None
    """The clear password, when it was given as such (``PBX_PASSWORD``): the TCP report
    channel's login sends it in clear (pbx-api.md, Events); an MD5 setting cannot."""

    def current_md5(self) -> Secret:
        """The MD5 (32 lower-case hex) of the password, as the PBX login expects."""
        if self.path is None:
            if self.md5 is None:
                raise ConfigError("no PBX password configured")
            return self.md5
        name = "PBX_PASSWORD_MD5_FILE" if self.path_holds_md5 else "PBX_PASSWORD_FILE"
        text = read_secret_file(name, self.path)
        return _md5_from_file(name, text) if self.path_holds_md5 else _md5_of(text)

    def current_clear(self) -> Secret | None:
        """The clear password (``PBX_PASSWORD`` or ``PBX_PASSWORD_FILE``, re-read), or None
        when only its MD5 is configured."""
        if self.path is None:
            return self.clear
        if self.path_holds_md5:
            return None
        return Secret(read_secret_file("PBX_PASSWORD_FILE", self.path))


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may cost the server (see :mod:`gateway.http_guard`)."""

    max_header_bytes: int = 81_920
    """Request line and headers; 80 KiB holds a GET carrying a 64 KiB document."""
    max_headers: int = 100
    header_timeout: float = 10.0
    """Seconds from the connection (or the previous answer) to the end of the headers."""
    body_timeout: float = 20.0
    """Seconds from the end of the headers to the end of the body."""
    max_connections: int = 512
    """Open connections at once; each holds a file descriptor."""
    max_connections_per_address: int = 256
    """Open connections from one address (a trusted proxy's are not counted)."""
    keep_alive_timeout: int = 5
    """Seconds an idle keep-alive connection stays open."""


def _http_limits(reader: EnvReader) -> HttpLimits:
    d, integer, number = HttpLimits, reader.integer, reader.number  # the fields' defaults
    return HttpLimits(
        max_header_bytes=integer("GATEWAY_MAX_HEADER_BYTES", d.max_header_bytes, minimum=1024),
        max_headers=integer("GATEWAY_MAX_HEADERS", d.max_headers, minimum=10),
        header_timeout=number("GATEWAY_HEADER_TIMEOUT", d.header_timeout, minimum=0.1),
        body_timeout=number("GATEWAY_BODY_TIMEOUT", d.body_timeout, minimum=0.1),
        max_connections=integer("GATEWAY_MAX_CONNECTIONS", d.max_connections, minimum=1),
        max_connections_per_address=integer(
            "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS", d.max_connections_per_address, minimum=1
        ),
        keep_alive_timeout=integer("GATEWAY_KEEP_ALIVE_TIMEOUT", d.keep_alive_timeout, minimum=1),
    )


@dataclass(frozen=True)
class LiveTransportLimits:
    """What one subscriber may hold (see :mod:`gateway.subscriptions`)."""

    init_timeout: float = 10.0
    """Seconds a WebSocket has to send ``connection_init``; then it is closed 4408."""
    keepalive: float = 15.0
    """Seconds between server pings (WebSocket) and ``{}`` heartbeats (multipart)."""
    max_per_connection: int = 10
    """Operations one WebSocket may run at once."""
    max_per_identity: int = 200
    """Subscriptions one caller may hold at once on this process, over every transport."""
    max_message_bytes: int = 65_536
    """The largest WebSocket message a client may send."""


def _live_transport(reader: EnvReader) -> LiveTransportLimits:
    d, integer, number = LiveTransportLimits, reader.integer, reader.number
    return LiveTransportLimits(
        init_timeout=number("GATEWAY_LIVE_INIT_TIMEOUT", d.init_timeout, minimum=0.05),
        keepalive=number("GATEWAY_LIVE_KEEPALIVE", d.keepalive, minimum=0.05),
        max_per_connection=integer(
            "GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION", d.max_per_connection, minimum=1
        ),
        max_per_identity=integer(
            "GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_IDENTITY", d.max_per_identity, minimum=1
        ),
        max_message_bytes=integer(
            "GATEWAY_LIVE_MAX_MESSAGE_BYTES", d.max_message_bytes, minimum=1024
        ),
    )


@dataclass(frozen=True)
class Settings:
    """Everything the gateway is configured with; see the README's configuration table."""

    pbx_url: str
    pbx_username: str
    pbx_password: PasswordSource
    pbx_verify_tls: bool | str = True
    pbx_timeout: float = 10.0
    pbx_timeout_linger: float | None = None
    """Seconds a timed-out call keeps its slot (the PBX is likely still on it).
    None: as long as ``pbx_timeout``."""
    pbx_max_concurrency: int = 2
    pbx_max_waiting: int = 50
    pbx_heartbeat_interval: float = 1200.0
    pbx_login_cooldown: float = 600.0
    pbx_lockout_backoff: float = 600.0
    pbx_breaker_threshold: int = 5
    pbx_breaker_cooldown: float = 30.0
    cache_ttl: float = 30.0
    stale_ttl: float = 86_400.0
    revalidate_window: float = 30.0
    cache_max_entries: int = 50_000
    session_ttl: float = 2.0
    """Seconds the list of who is in which room is fresh (``Conference.session``); never
    served stale."""
    live_buffer: int = 64
    """Updates a live subscriber may fall behind before it is closed (SLOW_CONSUMER)."""
    live_max_rooms: int = 100
    """Rooms one subscription may watch (``conferenceSessions``)."""
    live_share_updates: bool = True
    """A room update is executed once per selection and the result shared by the
    subscribers asking it (:mod:`gateway.schema.shared_updates`); false: once each."""
    response_cache_bytes: int = 32 * 1024 * 1024
    """Bytes of kept GraphQL answers (see :mod:`gateway.schema.response_cache`); 0: none."""
    compiled_plans: bool = True
    """Answer the reads a compiled plan covers straight from the store (see
    :mod:`gateway.schema.compiled_plan`); off: strawberry executes every operation."""
    request_deadline: float = 15.0
    max_numbers: int = 100
    batch_size: int = 100
    shutdown_grace: int = math.ceil(request_deadline + pbx_timeout)
    """Seconds in-flight requests get on SIGTERM: by default the request deadline plus
    one PBX call (a change is bounded by ``pbx_timeout``, not by the deadline), never
    less than the deadline."""
    login_at_start: bool = True
    live_source: str = "auto"
    """Where live room changes come from: ``auto``, ``events``, ``poll`` or ``off``
    (:mod:`gateway.live.supervisor`)."""
    pbx_report_port: int = 8333
    """The PBX's TCP report port (set on its API settings page; the docs give no default)."""
    live_poll_interval: float = 2.0
    """Seconds between polls of the watched rooms when no events arrive."""
    live_reconcile_interval: float = 30.0
    """Seconds between the checks, while on events, that no change was missed."""
    live_push_port: int | None = None
    """The port the PBX pushes events to (HTTP report method); None: no push listener."""
    live_push_bind: str = "0.0.0.0"
    """The address the push listener binds."""
    security: SecuritySettings = field(default_factory=SecuritySettings)
    redis_url: Secret | None = None
    redis_token_key: Secret | None = None
    redis_prefix: str = "pbxgw:"
    redis_timeout: float = 2.0
    live_lease_ttl: float = 10.0
    """With Redis: seconds the live-source lease lives unrenewed; a dead holder's successor
    holds it within this plus a third of it (:mod:`gateway.live.lease`)."""
    log_level: str = "INFO"
    graphiql_assets_dir: Path | None = None  # None: the files packaged in gateway/static/
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    live_transport: LiveTransportLimits = field(default_factory=LiveTransportLimits)
    """Subscriptions' transports: WebSocket and multipart (GATEWAY_LIVE_*)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read and check every variable; raise ConfigError naming the first bad one.
        A variable left unset takes the field's default above: defaults live there only."""
        reader = EnvReader(environ)
        d, integer, number = cls, reader.integer, reader.number
        return cls(
            pbx_url=_pbx_url(reader),
            pbx_username=reader.required("PBX_USERNAME"),
            pbx_password=_password_source(environ),
            pbx_verify_tls=_verify_tls(reader, "PBX_VERIFY_TLS"),
            pbx_timeout=_pbx_timeout(reader),
            pbx_timeout_linger=reader.optional_number("PBX_TIMEOUT_LINGER", minimum=0),
            pbx_max_concurrency=integer("PBX_MAX_CONCURRENCY", d.pbx_max_concurrency, minimum=1),
            pbx_max_waiting=integer("PBX_MAX_WAITING", d.pbx_max_waiting, minimum=0),
            pbx_heartbeat_interval=number(
                "PBX_HEARTBEAT_INTERVAL", d.pbx_heartbeat_interval, minimum=1
            ),
            pbx_login_cooldown=number("PBX_LOGIN_COOLDOWN", d.pbx_login_cooldown, minimum=1),
            pbx_lockout_backoff=number("PBX_LOCKOUT_BACKOFF", d.pbx_lockout_backoff, minimum=60),
            pbx_breaker_threshold=integer(
                "PBX_BREAKER_THRESHOLD", d.pbx_breaker_threshold, minimum=1
            ),
            pbx_breaker_cooldown=number(
                "PBX_BREAKER_COOLDOWN", d.pbx_breaker_cooldown, minimum=0.01
            ),
            cache_ttl=number("GATEWAY_CACHE_TTL", d.cache_ttl, minimum=0.001),
            stale_ttl=number("GATEWAY_STALE_TTL", d.stale_ttl, minimum=0),
            revalidate_window=number("GATEWAY_REVALIDATE_WINDOW", d.revalidate_window, minimum=0),
            cache_max_entries=integer("GATEWAY_CACHE_MAX_ENTRIES", d.cache_max_entries, minimum=1),
            session_ttl=number("GATEWAY_SESSION_TTL", d.session_ttl, minimum=0.001),
            live_buffer=integer("GATEWAY_LIVE_BUFFER", d.live_buffer, minimum=1),
            live_max_rooms=integer("GATEWAY_LIVE_MAX_ROOMS", d.live_max_rooms, minimum=1),
            live_share_updates=reader.boolean("GATEWAY_LIVE_SHARE_UPDATES", d.live_share_updates),
            response_cache_bytes=integer(
                "GATEWAY_RESPONSE_CACHE_BYTES", d.response_cache_bytes, minimum=0
            ),
            compiled_plans=reader.boolean("GATEWAY_COMPILED_PLANS", d.compiled_plans),
            request_deadline=_request_deadline(reader),
            max_numbers=integer("GATEWAY_MAX_NUMBERS", d.max_numbers, minimum=1),
            batch_size=integer("GATEWAY_BATCH_SIZE", d.batch_size, minimum=1),
            shutdown_grace=_shutdown_grace(reader),
            login_at_start=reader.boolean("GATEWAY_LOGIN_AT_START", d.login_at_start),
            live_source=reader.choice(
                "GATEWAY_LIVE_SOURCE", ("auto", "events", "poll", "off"), d.live_source
            ),
            pbx_report_port=report_port(reader),
            live_poll_interval=number(
                "GATEWAY_LIVE_POLL_INTERVAL", d.live_poll_interval, minimum=0.1
            ),
            live_reconcile_interval=number(
                "GATEWAY_LIVE_RECONCILE_INTERVAL", d.live_reconcile_interval, minimum=1
            ),
            live_push_port=(
                _port(reader, "GATEWAY_LIVE_PUSH_PORT", 0)
                if reader.get("GATEWAY_LIVE_PUSH_PORT")
                else None
            ),
            live_push_bind=reader.get("GATEWAY_LIVE_PUSH_BIND") or d.live_push_bind,
            security=security_from_environ(reader),
            redis_url=_secret(reader, "GATEWAY_REDIS_URL"),
            redis_token_key=_token_key(reader),
            redis_prefix=reader.get("GATEWAY_REDIS_PREFIX") or d.redis_prefix,
            redis_timeout=number("GATEWAY_REDIS_TIMEOUT", d.redis_timeout, minimum=0.05),
            live_lease_ttl=number("GATEWAY_LIVE_LEASE_TTL", d.live_lease_ttl, minimum=1),
            log_level=reader.choice(
                "GATEWAY_LOG_LEVEL", ("debug", "info", "warning", "error"), d.log_level.lower()
            ).upper(),
            graphiql_assets_dir=_directory(reader, "GATEWAY_GRAPHIQL_ASSETS_DIR"),
            http_limits=_http_limits(reader),
            live_transport=_live_transport(reader),
        )


def _pbx_url(reader: EnvReader) -> str:
    """``PBX_URL``: scheme, host and port only. The gateway adds ``/api/v2.0.0/`` itself, so a
    path would be doubled and cost a failed login with a misleading answer: refused now."""
    url = reader.url("PBX_URL")
    parts = urlsplit(url)
    if parts.path:
        origin = f"{parts.scheme}://{parts.netloc}"
        raise ConfigError(
            f"PBX_URL must hold no path (the gateway adds /api/v2.0.0/ itself): "
            f"write {origin} instead of {url}"
        )
    return url


def report_port(reader: EnvReader) -> int:
    """``PBX_REPORT_PORT`` alone, read as ``serve`` reads it (``doctor`` reads no more)."""
    return _port(reader, "PBX_REPORT_PORT", Settings.pbx_report_port)


def _port(reader: EnvReader, name: str, default: int) -> int:
    port = reader.integer(name, default, minimum=1)
    if port > 65535:
        raise ConfigError(f"{name} must be a TCP port, 1-65535; got {port}")
    return port


def _directory(reader: EnvReader, name: str) -> Path | None:
    """An existing folder, or None when the variable is unset."""
    raw = reader.get(name)
    if not raw:
        return None
    if not Path(raw).is_dir():
        raise ConfigError(f"{name}: {raw!r} is not a directory")
    return Path(raw)


def _pbx_timeout(reader: EnvReader) -> float:
    return reader.number("PBX_TIMEOUT", Settings.pbx_timeout, minimum=0.1)


def _request_deadline(reader: EnvReader) -> float:
    return reader.number("GATEWAY_REQUEST_DEADLINE", Settings.request_deadline, minimum=0.01)


def _shutdown_grace(reader: EnvReader) -> int:
    """At least the request deadline: a request cut off by shutdown gets no answer, and a
    change cut off that way may be on the PBX while its client never learns it."""
    deadline, timeout = _request_deadline(reader), _pbx_timeout(reader)
    grace = reader.integer("GATEWAY_SHUTDOWN_GRACE", math.ceil(deadline + timeout), minimum=0)
    if grace < deadline:
        raise ConfigError(
            f"GATEWAY_SHUTDOWN_GRACE ({grace}) must be at least GATEWAY_REQUEST_DEADLINE "
            f"({deadline:g}): requests cut off by a shutdown would get no answer"
        )
    return grace


def _secret(reader: EnvReader, name: str) -> Secret | None:
    """``NAME`` or ``NAME_FILE``, never both; the value is never echoed."""
    value, path = reader.get(name), reader.get(f"{name}_FILE")
    if value is not None and path is not None:
        raise ConfigError(f"set only one of {name}, {name}_FILE")
    if path is not None:
        return Secret(read_secret_file(f"{name}_FILE", Path(path)))
    return None if value is None else Secret(value)


def _token_key(reader: EnvReader) -> Secret | None:
    """The Fernet key that encrypts the shared PBX token in Redis (required with Redis)."""
    url, key = _secret(reader, "GATEWAY_REDIS_URL"), _secret(reader, "GATEWAY_REDIS_TOKEN_KEY")
    if url is None:
        return None
    if key is None:
        raise ConfigError(
            "GATEWAY_REDIS_TOKEN_KEY (or _FILE) is required with GATEWAY_REDIS_URL: make one "
            "with `pbx-gateway token-key`"
        )
    try:
        from cryptography.fernet import Fernet

        Fernet(key.reveal().encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "GATEWAY_REDIS_TOKEN_KEY is not a Fernet key (32 url-safe base64 bytes)"
        ) from None
    if not url.reveal().startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("GATEWAY_REDIS_URL must start with redis://, rediss:// or unix://")
    return key


def _verify_tls(reader: EnvReader, name: str) -> bool | str:
    raw = reader.get(name)
    if raw is None or raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    if not Path(raw).is_file():
        raise ConfigError(f"{name} must be true, false or the path of a CA file; {raw!r} is none")
    return raw


def pbx_verify_tls(reader: EnvReader, name: str = "PBX_VERIFY_TLS") -> bool | str:
    """``PBX_VERIFY_TLS`` alone, read as ``serve`` reads it (``doctor`` reads no more)."""
    return _verify_tls(reader, name)


def pbx_password_source(environ: Mapping[str, str]) -> PasswordSource:
    """The PBX password setting alone, read as ``serve`` reads it (``doctor`` reads no more)."""
    return _password_source(environ)


def _password_source(environ: Mapping[str, str]) -> PasswordSource:
    """Exactly one of the four password variables, checked now (and files read once now)."""
    given = [
        name
        for name in (
            "PBX_PASSWORD",
            "PBX_PASSWORD_FILE",
            "PBX_PASSWORD_MD5",
            "PBX_PASSWORD_MD5_FILE",
        )
        if environ.get(name, "") != ""
    ]
    if not given:
        raise ConfigError(
            "PBX_PASSWORD is required "
            "(or PBX_PASSWORD_FILE, PBX_PASSWORD_MD5, PBX_PASSWORD_MD5_FILE)"
        )
    if len(given) > 1:
        raise ConfigError(f"set only one of {', '.join(given)}")
    name = given[0]
    value = environ[name]
    if name == "PBX_PASSWORD":
        return PasswordSource(md5=_md5_of(value), clear=Secret(value))
    if name == "PBX_PASSWORD_MD5":
        if not _MD5_HEX.match(value.strip()):
            raise ConfigError("PBX_PASSWORD_MD5 must be 32 hexadecimal characters")
        return PasswordSource(md5=Secret(value.strip().lower()))
    source = PasswordSource(path=Path(value), path_holds_md5=name == "PBX_PASSWORD_MD5_FILE")
    source.current_md5()  # fail at start-up, not at the first login
    return source


def _md5_from_file(name: str, text: str) -> Secret:
    if not _MD5_HEX.match(text.strip()):
        raise ConfigError(f"{name} must hold 32 hexadecimal characters")
    return Secret(text.strip().lower())


def _md5_of(password: str) -> Secret:
    return Secret(hashlib.md5(password.encode("utf-8")).hexdigest())
