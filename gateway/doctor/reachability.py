"""Can the gateway reach the PBX API at all? Checked before any credential leaves.

In order: the ``PBX_URL`` itself (a path is reported, and the address is checked without it),
DNS, a TCP connect (which also gives the local address the heartbeat's ``ipaddr`` carries),
then one API call that needs no credentials: a heartbeat without a token. An enabled API
answers it with its envelope (errno 20005, token blank); anything else (a redirect, an HTML
page, a 404, an untrusted certificate) is named with what to change. A failed token check is
not a failed login, so this call costs nothing toward the lockout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from gateway.doctor.options import DoctorOptions, PbxUrl, parse_pbx_url
from gateway.doctor.report import Report, Status
from gateway.doctor.wire import Reply, ReplyKind, Wire
from gateway.errors import ConfigError

_ENABLE_API = (
    "enable the API on the PBX (Settings > PBX > General > API; firmware 30.13.0.30 or later) "
    "and check that PBX_URL is the PBX's web address, factory {factory}"
)
_CONNECT_TIMEOUT = 5.0  # as the gateway's client: an unplugged PBX fails fast


def check_url(options: DoctorOptions, report: Report) -> None:
    """The ``PBX_URL`` row; the recommended URL is the address without anything extra."""
    url = options.url
    report.recommended["PBX_URL"] = url.base_url
    if url.extra:
        report.add(
            "PBX_URL",
            Status.PROBLEM,
            f"carries {url.extra!r} after the address: the gateway adds /api/v2.0.0/ itself, "
            "so every call would miss the API (and the login would fail)",
            f"drop it: PBX_URL={url.base_url} (checked below without it)",
        )
    else:
        report.add("PBX_URL", Status.OK, url.base_url)


async def resolve(url: PbxUrl, seconds: float, report: Report) -> bool:
    """The ``dns`` row: whether the host name resolves."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM), seconds
        )
    except (OSError, TimeoutError) as exc:
        report.add(
            "dns",
            Status.PROBLEM,
            f"{url.host} does not resolve ({type(exc).__name__})",
            "check the host name in PBX_URL, or use the PBX's IP address",
        )
        return False
    addresses = sorted({str(info[4][0]) for info in infos})
    if addresses == [url.host]:
        report.add("dns", Status.OK, f"{url.host} is an IP address: nothing to resolve")
    else:
        report.add("dns", Status.OK, f"{url.host} is {', '.join(addresses[:3])}")
    return True


async def connect(url: PbxUrl, seconds: float, report: Report) -> str | None:
    """The ``connect`` row; the local address of the connection (the heartbeat's ``ipaddr``)."""
    where = f"{url.host_in_url}:{url.port}"
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(url.host, url.port), min(seconds, _CONNECT_TIMEOUT)
        )
    except TimeoutError:
        report.add(
            "connect",
            Status.PROBLEM,
            f"no answer from {where} in {min(seconds, _CONNECT_TIMEOUT):g} s",
            "check the address and that no firewall drops the traffic",
        )
        return None
    except OSError as exc:
        report.add(
            "connect",
            Status.PROBLEM,
            f"cannot connect to {where}: {exc.strerror or type(exc).__name__}",
            f"check the port in PBX_URL: the PBX's API listens on its web port, factory "
            f"{url.factory_https}",
        )
        return None
    local = str(writer.get_extra_info("sockname")[0])
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    report.add("connect", Status.OK, f"{where} accepts connections (from {local})")
    return local


async def probe_api(wire: Wire, options: DoctorOptions, report: Report) -> bool:
    """The ``tls`` and ``api`` rows: whether an API answers, and may be given credentials."""
    reply = await wire.post("heartbeat", {})  # no token: 20005 from an enabled API
    if not _tls_row(reply, options, report):
        return False
    url = options.url
    enable = _ENABLE_API.format(factory=url.factory_https)
    if reply.kind is ReplyKind.ENVELOPE:
        report.findings.api = True
        report.add("api", Status.OK, f"the PBX API answers ({reply.describe()} without a token)")
        return True
    report.findings.api = False
    if reply.kind is ReplyKind.REDIRECT:
        target = _origin(reply.location) or url.factory_https
        report.recommended["PBX_URL"] = target
        report.add(
            "api",
            Status.PROBLEM,
            f"{reply.detail}; the gateway never follows a redirect for a POST (the body would "
            "be lost), so no call would reach the API",
            f"set PBX_URL={target}, the address the PBX redirects to",
        )
    elif reply.kind in (ReplyKind.HTTP_STATUS, ReplyKind.NOT_JSON, ReplyKind.NOT_ENVELOPE):
        report.add(
            "api",
            Status.PROBLEM,
            f"{reply.detail}: not the PBX API, which always answers HTTP 200 with JSON",
            enable,
        )
    else:
        hint = (
            "; if this port speaks HTTPS, use https:// in PBX_URL"
            if url.scheme == "http" and reply.kind is ReplyKind.CONNECTION
            else ""
        )
        report.add("api", Status.PROBLEM, f"no usable answer: {reply.detail}", enable + hint)
    return False


def _tls_row(reply: Reply, options: DoctorOptions, report: Report) -> bool:
    """The ``tls`` row; False when TLS itself failed (nothing else can be checked)."""
    url = options.url
    if url.scheme == "http":
        report.add(
            "tls",
            Status.WARN,
            "none: plain HTTP, so the password's MD5 and the token cross the network in clear",
            f"use the PBX's HTTPS address if it has one (factory {url.factory_https})",
        )
        return True
    where = f"{url.host_in_url}:{url.port}"
    if reply.kind is ReplyKind.UNTRUSTED_CERTIFICATE:
        save = (
            f"openssl s_client -connect {where} -showcerts </dev/null | openssl x509 > pbx-cert.pem"
        )
        report.recommended["PBX_VERIFY_TLS"] = "/path/to/pbx-cert.pem"
        what = "the PBX's own self-signed certificate (the factory default)"
        report.add(
            "tls",
            Status.PROBLEM,
            f"{reply.detail}" + (f": {what}" if reply.self_signed else ""),
            f"save the PBX's certificate ({save}) and set PBX_VERIFY_TLS=/path/to/pbx-cert.pem; "
            "or set PBX_VERIFY_TLS=false to skip verification (anyone on the path could then "
            "pose as the PBX)",
        )
        return False
    if reply.kind is ReplyKind.TLS_ERROR:
        report.add(
            "tls",
            Status.PROBLEM,
            f"{reply.detail} on {where}",
            f"this port may not speak HTTPS: use http:// or the PBX's HTTPS port "
            f"(factory {url.factory_https})",
        )
        return False
    if reply.kind in (ReplyKind.TIMEOUT, ReplyKind.CONNECTION):
        report.add("tls", Status.SKIPPED, "no answer to check the certificate on")
        return True
    if options.verify is False:
        report.recommended["PBX_VERIFY_TLS"] = "false"
        report.add(
            "tls",
            Status.WARN,
            "not verified (PBX_VERIFY_TLS=false): anyone on the path could pose as the PBX",
            "prefer PBX_VERIFY_TLS=/path/to/pbx-cert.pem, the PBX's own certificate",
        )
    elif isinstance(options.verify, str):
        report.recommended["PBX_VERIFY_TLS"] = options.verify
        report.add("tls", Status.OK, f"verified against {options.verify}")
    else:
        report.recommended["PBX_VERIFY_TLS"] = "true"
        report.add("tls", Status.OK, "verified against the system's certificate authorities")
    return True


def _origin(location: str | None) -> str | None:
    """``scheme://host:port`` of a redirect target, when it is an http(s) URL."""
    if location is None:
        return None
    try:
        return parse_pbx_url("Location", location).base_url
    except ConfigError:  # an unreadable target: the factory address is suggested instead
        return None
