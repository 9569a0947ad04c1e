"""Helpers for the ``doctor`` tests: a run against a URL, and the servers a real PBX is not.

``run_doctor`` builds options through the real argument parser and settings readers, then runs
doctor in the test's loop (``tests.loopback.serve_app`` serves the stand-ins below, over TLS
when given a certificate: the simulator itself speaks plain HTTP); ``self_signed_certificate``
makes the kind of certificate a PBX ships with. ``not_a_pbx`` and ``redirecting`` are the web
servers a wrong ``PBX_URL`` meets; ``with_member_endpoints`` is a simulator whose
live-conference endpoints are replaced by stand-ins that record each body, and
``with_endpoints`` any firmware that answers one endpoint its own way.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.cli import build_parser
from gateway.doctor import Report, diagnose
from gateway.doctor.options import options_from
from gateway.doctor.variant import CONFERENCE_ENDPOINTS
from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME
from gateway.simulator.envelope import failed, success

METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD"]


async def run_doctor(url: str, *flags: str, **environ: str) -> Report:
    """Doctor against ``url`` with the demo credentials; ``environ`` adds or replaces variables."""
    env = {
        "PBX_URL": url,
        "PBX_USERNAME": DEMO_USERNAME,
        "PBX_PASSWORD": DEMO_PASSWORD,
        **environ,
    }
    args = build_parser().parse_args(["doctor", *flags])
    return await diagnose(options_from(env, args))


def statuses(report: Report) -> dict[str, str]:
    """Each row's name and status, for assertions that read like the table."""
    return {check.name: check.status.value for check in report.checks}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a PBX ships with; (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Yeastar PBX")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "pbx-cert.pem", directory / "pbx-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def not_a_pbx(status: int, seen: list[str]) -> Starlette:
    """A web server that answers every path with an HTML page (an API turned off, a router)."""

    async def page(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        return HTMLResponse("<html><body>Not Found</body></html>", status_code=status)

    return Starlette(routes=[Route("/{path:path}", page, methods=METHODS)])


def redirecting(location: str, seen: list[str]) -> Starlette:
    """Port 80 of a factory-set PBX: every request is redirected to ``location``."""

    async def moved(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        return Response(status_code=301, headers={"Location": location})

    return Starlette(routes=[Route("/{path:path}", moved, methods=METHODS)])


Answer = Callable[[dict[str, Any]], Response]


def with_endpoints(simulator: ASGIApp, answers: Mapping[str, Answer]) -> ASGIApp:
    """The simulator, except that each endpoint in ``answers`` is answered by its function
    (given the JSON body): a firmware that differs from every simulator profile there."""
    paths = {f"/api/v2.0.0/{endpoint}": answer for endpoint, answer in answers.items()}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        answer = paths.get(scope["path"]) if scope["type"] == "http" else None
        if answer is None:
            await simulator(scope, receive, send)
            return
        body = json.loads(await Request(scope, receive).body() or b"{}")
        await answer(body)(scope, receive, send)

    return app


def with_member_endpoints(simulator: ASGIApp, seen: list[Mapping[str, Any]]) -> ASGIApp:
    """A firmware with the live-conference and member endpoints, each refusing a blank
    ``number`` with 10004 before doing anything; ``seen`` collects the bodies received."""

    def member_control(body: dict[str, Any]) -> Response:
        seen.append(body)
        return failed("10004") if not str(body.get("number", "")).strip() else success()

    return with_endpoints(simulator, dict.fromkeys(CONFERENCE_ENDPOINTS, member_control))
