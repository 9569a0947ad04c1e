"""What ``doctor`` checks, read from the settings ``serve`` uses, with flags on top.

``PBX_URL`` is not refused for a path (``/api/v2.0.0``) or a query as it could be by ``serve``:
doctor analyses it (:class:`PbxUrl`), reports what is extra and checks the address without it.
A URL holding credentials is still refused, without echoing it. The password comes from the
same variables as for ``serve`` (or ``--password-file``, so it never sits in a command line).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.env import EnvReader, read_secret_file
from gateway.errors import ConfigError
from gateway.settings import (
    PasswordSource,
    Settings,
    pbx_password_source,
    pbx_verify_tls,
    report_port,
)

FACTORY_HTTPS_PORT = 8088
"""The PBX's factory web (and API) port: ``https://IP:8088`` (pbx-api.md, Transport)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PASSWORD_VARIABLES = (
    "PBX_PASSWORD",
    "PBX_PASSWORD_FILE",
    "PBX_PASSWORD_MD5",
    "PBX_PASSWORD_MD5_FILE",
)


@dataclass(frozen=True)
class PbxUrl:
    """A ``PBX_URL`` taken apart: the address to talk to, and whatever it carries beyond it."""

    scheme: str
    host: str
    port: int
    netloc: str
    extra: str
    """Path, query or fragment after ``scheme://host:port`` (``""`` when there is none)."""

    @property
    def base_url(self) -> str:
        """``scheme://host[:port]``: what ``PBX_URL`` should be."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def host_in_url(self) -> str:
        """The host as written in a URL (an IPv6 address in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def factory_https(self) -> str:
        """The PBX's factory API address on this host: ``https://HOST:8088``."""
        return f"https://{self.host_in_url}:{FACTORY_HTTPS_PORT}"


def parse_pbx_url(name: str, raw: str) -> PbxUrl:
    """``raw`` taken apart; ConfigError (naming ``name``) when it is no http(s) URL at all."""
    value = raw.strip()
    parts = urlsplit(value)
    # Checked first, and the value never echoed then: it would print the credentials.
    if "@" in parts.netloc:
        raise ConfigError(f"{name} must hold no credentials (user:password@); remove them")
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number: {value!r}") from None
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            f"{name} must be an http(s) URL such as https://192.168.5.150:8088, got {value!r}"
        )
    extra = parts.path.rstrip("/")
    if parts.query:
        extra += f"?{parts.query}"
    if parts.fragment:
        extra += f"#{parts.fragment}"
    return PbxUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        netloc=parts.netloc.lower(),
        extra=extra,
    )


@dataclass(frozen=True)
class DoctorOptions:
    """Everything one doctor run needs; ``password`` is only revealed to the one login."""

    url: PbxUrl
    username: str
    password: PasswordSource
    password_from: str
    """Which setting the password came from (its name, never its value)."""
    verify: bool | str
    timeout: float
    report_port: int = Settings.pbx_report_port
    """The PBX's TCP report port (``PBX_REPORT_PORT``), for the events probe."""
    probe_tokens: bool = True
    """Whether a second login (same credentials, after the first succeeded) may find out if
    the PBX keeps one token per user."""


def options_from(environ: Mapping[str, str], args: argparse.Namespace) -> DoctorOptions:
    """The environment as ``serve`` reads it, each flag given replacing its variable."""
    reader = EnvReader(environ)
    if args.url is not None:
        url = parse_pbx_url("--url", args.url)
    else:
        url = parse_pbx_url("PBX_URL", reader.required("PBX_URL"))
    username = args.username or reader.required("PBX_USERNAME")
    if args.password_file is not None:
        read_secret_file("--password-file", Path(args.password_file))  # bad usage, said now
        password = PasswordSource(path=Path(args.password_file))
        password_from = "--password-file"  # noqa: S105 - a flag name, not a password
    else:
        password = pbx_password_source(environ)
        password_from = next(n for n in _PASSWORD_VARIABLES if environ.get(n, "") != "")
    if args.verify_tls is not None:
        verify = pbx_verify_tls(EnvReader({"--verify-tls": args.verify_tls}), "--verify-tls")
    else:
        verify = pbx_verify_tls(reader)
    if args.timeout is not None:
        timeout = EnvReader({"--timeout": args.timeout}).number(
            "--timeout", Settings.pbx_timeout, minimum=0.1
        )
    else:
        timeout = reader.number("PBX_TIMEOUT", Settings.pbx_timeout, minimum=0.1)
    return DoctorOptions(
        url=url,
        username=username,
        password=password,
        password_from=password_from,
        verify=verify,
        timeout=timeout,
        report_port=report_port(reader),
        probe_tokens=not args.no_token_probe,
    )
