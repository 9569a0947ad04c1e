"""One raw call to the PBX API for ``doctor``: every answer classified, nothing raised.

The gateway's own client (``gateway.pbx.client``) turns anything but ``Success`` into an
exception, which is what serving needs. Doctor must *describe* the odd answers instead (a
redirect and where it points, an HTML page, an untrusted certificate), so it reads the raw
response here. It sends through ``build_http_client``, the gateway's own client settings (no
redirects followed, the same TLS verification, the same timeouts), so what doctor sees is
what ``serve`` would see.

A :class:`Reply` never holds the request URL (it carries the token) nor a body the PBX sent
beyond the decoded envelope, which the probes read for field names only.
"""

from __future__ import annotations

import enum
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx

from gateway.pbx.client import API_PATH
from gateway.pbx.errnos import normalize_errno
from gateway.secrets import redact

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# OpenSSL's verify codes for a certificate nobody vouches for but itself.
_SELF_SIGNED_CODES: Final = frozenset({18, 19})


class ReplyKind(enum.Enum):
    """What came back, from best to worst."""

    ENVELOPE = "envelope"
    """The PBX API's answer: ``{"status": "Success"|"Failed", ...}`` with HTTP 200."""
    REDIRECT = "redirect"
    HTTP_STATUS = "http-status"
    """Another status than 200: the API always answers 200, so something else answered."""
    NOT_JSON = "not-json"
    NOT_ENVELOPE = "not-envelope"
    """JSON, but not the PBX's envelope."""
    UNTRUSTED_CERTIFICATE = "untrusted-certificate"
    TLS_ERROR = "tls-error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"


@dataclass(frozen=True)
class Reply:
    """One classified answer; ``detail`` is a short, safe description for people."""

    kind: ReplyKind
    http_status: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    detail: str = ""
    location: str | None = None
    """Where a redirect points, without its query (which could carry a token)."""
    self_signed: bool = False

    @property
    def succeeded(self) -> bool:
        """An envelope with ``status: Success``."""
        return self.kind is ReplyKind.ENVELOPE and self.payload.get("status") == "Success"

    @property
    def failed(self) -> bool:
        """An envelope with ``status: Failed``."""
        return self.kind is ReplyKind.ENVELOPE and self.payload.get("status") == "Failed"

    @property
    def errno(self) -> str | None:
        """The errno of a ``Failed`` envelope, as a string of digits when readable."""
        return normalize_errno(self.payload.get("errno")) if self.failed else None

    def describe(self) -> str:
        """One line: ``Success``, ``Failed, errno 10004``, ``HTTP 404 (text/html)``..."""
        if self.succeeded:
            return "Success"
        if self.failed:
            return f"Failed, errno {self.errno or 'none'}"
        return self.detail


class Wire:
    """Sends raw API calls on one httpx client and counts them."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self.calls = 0
        self.logins = 0

    async def post(
        self, endpoint: str, body: Mapping[str, Any] | None, *, token: str | None = None
    ) -> Reply:
        """``POST /api/v2.0.0/{endpoint}`` and the answer, classified."""
        self.calls += 1
        if endpoint == "login":
            self.logins += 1
        params = {"token": token} if token is not None else None
        content = b"" if body is None else json.dumps(body).encode()
        try:
            response = await self._http.post(API_PATH + endpoint, content=content, params=params)
        except httpx.TimeoutException as exc:
            return Reply(ReplyKind.TIMEOUT, detail=f"no answer in time ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return _transport_failure(exc)
        return classify(response)


def classify(response: httpx.Response) -> Reply:
    """Read one HTTP answer the way the gateway's client does, but say what it was."""
    status = response.status_code
    content_type = response.headers.get("content-type", "no content-type")
    if status in _REDIRECTS:
        location = _safe_location(response)
        return Reply(
            ReplyKind.REDIRECT,
            http_status=status,
            location=location,
            detail=f"HTTP {status} redirect to {location or 'nowhere'}",
        )
    if status != 200:
        return Reply(
            ReplyKind.HTTP_STATUS, http_status=status, detail=f"HTTP {status} ({content_type})"
        )
    try:
        payload = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return Reply(
            ReplyKind.NOT_JSON,
            http_status=status,
            detail=f"HTTP 200, {len(response.content)} bytes that are not JSON ({content_type})",
        )
    if not isinstance(payload, dict) or payload.get("status") not in ("Success", "Failed"):
        return Reply(
            ReplyKind.NOT_ENVELOPE, http_status=status, detail="JSON without the PBX's status"
        )
    return Reply(ReplyKind.ENVELOPE, http_status=status, payload=payload)


def _safe_location(response: httpx.Response) -> str | None:
    raw = response.headers.get("location")
    if not raw:
        return None
    absolute = urlsplit(urljoin(str(response.request.url), raw))
    return f"{absolute.scheme}://{absolute.netloc}{absolute.path}"


def _transport_failure(exc: httpx.HTTPError) -> Reply:
    """A refused, reset or TLS-failed call; the certificate's own complaint when there is one."""
    cause = _ssl_error(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Reply(
            ReplyKind.UNTRUSTED_CERTIFICATE,
            detail=f"certificate not trusted: {cause.verify_message}",
            self_signed=cause.verify_code in _SELF_SIGNED_CODES,
        )
    if cause is not None:
        return Reply(
            ReplyKind.TLS_ERROR, detail=f"TLS failed: {cause.reason or type(cause).__name__}"
        )
    # httpx's messages hold no URL, but scrub a token anyway: this text is printed.
    message = redact(str(exc))[:120] or "no detail"
    return Reply(ReplyKind.CONNECTION, detail=f"{type(exc).__name__}: {message}")


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(10):  # httpx -> httpcore -> ssl: a short chain
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
