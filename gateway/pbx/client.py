"""One HTTP call to the PBX API, with every failure translated at one seam.

:class:`PbxClient` sends ``POST {base}/api/v2.0.0/{endpoint}?token=...`` with a JSON body
on the application's one shared ``httpx.AsyncClient`` and returns the decoded body of a
``Success`` answer. Everything else becomes an error from :mod:`gateway.errors`:

- httpx exceptions (timeouts, refused or reset connections, TLS) in :meth:`_send`, the
  only place that catches them;
- non-200 statuses, non-JSON or truncated bodies, and ``Failed`` envelopes in
  :func:`decode_envelope`, the only place that reads ``status`` and ``errno``.

A semaphore caps concurrent PBX requests: the device is a single-process embedded web
server that closes every connection (``pbx-api.md``, Transport), so the gateway never
sends it more than ``max_concurrency`` requests at once. The cap counts from the PBX's
side: a call runs in a task of its own, so a caller that gives up (cancelled) does not
free its slot while the PBX still works on the request; the slot is free when the
exchange has ended (see :meth:`PbxClient._exchange` and the limiter's linger).

Every call has one total deadline (``deadline``, by default the HTTP client's read
timeout, i.e. ``PBX_TIMEOUT``): httpx's own timeouts are per phase and per chunk, so a
PBX that drips its answer a byte at a time would otherwise hold a slot for ever.

Why over 300 lines: the seam (``_send``) and the envelope (``decode_envelope``) are the two
places every PBX answer passes, and the exchange task that keeps the cap true from the
PBX's side wraps them; split apart, each would have to re-explain the other's failure cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

import httpx

from gateway.errors import (
    PbxApiError,
    PbxAuthError,
    PbxConnectionError,
    PbxLockedOutError,
    PbxProtocolError,
    PbxTimeoutError,
    PbxTokenError,
    PbxTransientError,
    PbxUnavailableError,
)
from gateway.pbx import errnos
from gateway.pbx.breaker import CircuitBreaker
from gateway.pbx.errordata import request_secrets, sanitize_errordata
from gateway.pbx.limiter import PbxLimiter
from gateway.pbx.local_address import connection_address, routed_address
from gateway.secrets import install_redaction

API_PATH: Final = "/api/v2.0.0/"

logger = logging.getLogger(__name__)

JsonObject = dict[str, Any]

CallObserver = Callable[[str, str, str | None, float], None]
"""Told of every call that reached the PBX: endpoint, outcome (``success``, ``failed``,
``unavailable``), errno, seconds. Metrics plug in here."""


def _ignore(endpoint: str, outcome: str, errno: str | None, seconds: float) -> None:
    return None


class CallTracer(Protocol):
    """Opens a span around one call that reached the PBX (never given the token or the
    body). The app passes OpenTelemetry's (``gateway.observability.tracing``) at
    construction; the PBX package itself knows nothing of tracing or GraphQL."""

    def __call__(self, endpoint: str) -> AbstractContextManager[None]: ...


def _untraced(endpoint: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def build_http_client(
    *,
    base_url: str,
    timeout: float,
    verify: bool | str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The shared client: no redirects (a POST across the PBX's 80 -> 8088 redirect breaks),
    connect timeout capped at 5 s so an unplugged PBX fails fast, TLS verified by default.
    """
    # httpx logs every request URL, token included, at INFO: scrub it before anyone sees it.
    install_redaction("httpx")
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        # A CA file as a context: httpx 0.28 deprecates verify=<path> (a warning, then an error).
        verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
        follow_redirects=False,
        transport=transport,
        # Boa closes every connection anyway; keeping none avoids reusing a dead socket.
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )


class PbxClient:
    """Sends API calls and returns the decoded ``Success`` body, or raises a PbxError.

    Every call passes the circuit breaker, then waits (boundedly) for one of the PBX's
    request slots. An idempotent call that lost its connection is retried once, after a
    short jittered pause; nothing else is retried here.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        limiter: PbxLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        max_concurrency: int = 2,
        deadline: float | None = None,
        tracer: CallTracer = _untraced,
        observer: CallObserver = _ignore,
    ) -> None:
        self._http = http
        self._tracer = tracer
        self.deadline = deadline if deadline is not None else (http.timeout.read or 30.0)
        self._abandoned: set[asyncio.Task[httpx.Response]] = set()
        self.limiter = limiter or PbxLimiter(max_concurrency=max_concurrency, max_waiting=1000)
        self.breaker = breaker or CircuitBreaker(threshold=1_000_000)
        self.observer = observer
        self.local_address: str | None = None
        """Our address on the last connection to the PBX (None before the first call)."""

    def heartbeat_address(self) -> str:
        """The ``ipaddr`` for a heartbeat: see :mod:`gateway.pbx.local_address`."""
        return self.local_address or routed_address(self.base_url)

    @property
    def base_url(self) -> str:
        """The PBX's base URL (never carries a token)."""
        return str(self._http.base_url).rstrip("/")

    async def call(
        self,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        idempotent: bool = False,
        bypass_breaker: bool = False,
    ) -> JsonObject:
        """POST ``body`` to ``endpoint`` and return the ``Success`` envelope as a dict.

        ``bypass_breaker`` is for the one call that must be tried whatever the breaker
        thinks: the logout at shutdown, so the token does not stay live on the PBX.
        """
        try:
            return await self._call_once(endpoint, body, token, bypass_breaker)
        except PbxConnectionError:
            if not idempotent:
                raise
            await asyncio.sleep(random.uniform(0.05, 0.25))  # noqa: S311 (jitter, not crypto)
            return await self._call_once(endpoint, body, token)

    async def _call_once(
        self,
        endpoint: str,
        body: Mapping[str, Any] | None,
        token: str | None,
        bypass_breaker: bool = False,
    ) -> JsonObject:
        if not bypass_breaker:
            self.breaker.before_call(endpoint)
        sent: list[float] = []  # when the request left (empty: it never reached the PBX)
        try:
            response = await self._exchange(endpoint, body, token, sent)
            payload = decode_envelope(endpoint, response, secrets=request_secrets(token, body))
        except PbxUnavailableError as exc:
            # The PBX's address and the operator's hint go to the log only, never to a client.
            logger.warning("PBX at %s, %s: %s", self.base_url, endpoint, exc.log_line)
            self.breaker.failed()
            self._observe(endpoint, "unavailable", getattr(exc, "errno", None), sent)
            raise
        except PbxApiError as exc:
            logger.info("PBX at %s, %s: %s", self.base_url, endpoint, exc.log_line)
            self.breaker.succeeded()  # a decoded refusal: the device is there
            self._observe(endpoint, "failed", exc.errno, sent)
            raise
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        self._observe(endpoint, "success", None, sent)
        return payload

    def _observe(self, endpoint: str, outcome: str, errno: str | None, sent: list[float]) -> None:
        if sent:  # empty: refused before reaching the PBX (no call was made)
            self.observer(endpoint, outcome, errno, time.perf_counter() - sent[0])

    async def _exchange(
        self, endpoint: str, body: Mapping[str, Any] | None, token: str | None, sent: list[float]
    ) -> httpx.Response:
        """Take a slot and send, in a task the caller's cancellation does not end once the
        request is on its way: the PBX goes on working on a request whose caller gave up,
        so its slot stays taken until the PBX has answered or the deadline cut it off."""

        async def exchange() -> httpx.Response:
            async with self.limiter.slot(endpoint):
                sent.append(time.perf_counter())
                with self._tracer(endpoint):
                    return await self._send(endpoint, body, token)

        task = asyncio.create_task(exchange())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not sent:
                task.cancel()  # still waiting for a slot: nothing reached the PBX
            else:
                self._abandoned.add(task)  # a reference, so it runs to its end
                task.add_done_callback(self._abandoned_ended)
            raise

    def _abandoned_ended(self, task: asyncio.Task[httpx.Response]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # nobody waits for it any more: its outcome is not an error

    async def _send(
        self, endpoint: str, body: Mapping[str, Any] | None, token: str | None
    ) -> httpx.Response:
        """The one seam where httpx's exceptions become the gateway's, most specific first."""
        params = {"token": token} if token is not None else None
        content = b"" if body is None else json.dumps(body).encode()
        try:
            request = self._http.build_request(
                "POST", API_PATH + endpoint, content=content, params=params
            )
            async with asyncio.timeout(self.deadline):  # the whole call, not each chunk
                # Streamed so the socket is still open to read our local address from it (the
                # heartbeat's ipaddr); the body is read in full right after.
                response = await self._http.send(request, stream=True)
                try:
                    self.local_address = connection_address(response) or self.local_address
                    await response.aread()
                finally:
                    await response.aclose()
            return response
        except httpx.TimeoutException as exc:
            raise PbxTimeoutError(
                f"the PBX did not answer {endpoint} in time ({type(exc).__name__}); "
                "try again shortly",
                endpoint=endpoint,
                reached_pbx=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
                hint="check that it is up and not overloaded, or raise PBX_TIMEOUT",
            ) from exc
        except httpx.TransportError as exc:
            raise PbxConnectionError(
                f"could not reach the PBX for {endpoint} ({type(exc).__name__}); try again shortly",
                endpoint=endpoint,
                hint="check PBX_URL, the network, and PBX_VERIFY_TLS for a self-signed certificate",
            ) from exc
        except TimeoutError as exc:  # the deadline: e.g. a PBX dripping its answer
            raise PbxTimeoutError(
                f"the PBX did not answer {endpoint} within {self.deadline:g} s (its whole "
                "answer); try again shortly",
                endpoint=endpoint,
                hint="PBX_TIMEOUT bounds the whole call, answer included: check that the PBX "
                "is not overloaded and nothing between it and the gateway slows its answers",
            ) from exc
        except httpx.HTTPError as exc:  # DecodingError (a body that lies about its encoding)
            raise PbxProtocolError(
                f"the answer to {endpoint} could not be read ({type(exc).__name__})",
                endpoint=endpoint,
                hint="something between the gateway and the PBX may be rewriting it",
            ) from exc


def decode_envelope(
    endpoint: str, response: httpx.Response, *, secrets: Iterable[str] = ()
) -> JsonObject:
    """Read ``status``/``errno``; the PBX always answers HTTP 200 (``pbx-api.md``).

    A failure's ``errordata`` hint travels on the error, sanitized (``secrets``, what the
    request carried that must never come back, are redacted from it)."""
    if response.status_code != 200:
        raise PbxProtocolError(
            f"{endpoint} answered HTTP {response.status_code}, which the PBX API never does",
            endpoint=endpoint,
            hint="something between the gateway and the PBX (a proxy, a wrong port in PBX_URL) "
            "answered instead",
        )
    try:
        payload = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise PbxProtocolError(
            f"{endpoint} answered {len(response.content)} bytes that are not JSON "
            f"(content-type {response.headers.get('content-type', 'none')[:60]!r})",
            endpoint=endpoint,
            hint="is PBX_URL the PBX's API address and is the API enabled "
            "(Settings > PBX > General > API)?",
        ) from None
    if not isinstance(payload, dict):
        raise PbxProtocolError(f"{endpoint} answered JSON that is not an object", endpoint=endpoint)
    status = payload.get("status")
    if status == "Success":
        return payload
    if status != "Failed":
        raise PbxProtocolError(
            f"{endpoint} answered an unknown status {str(status)[:40]!r}", endpoint=endpoint
        )
    error = _failure(endpoint, errnos.normalize_errno(payload.get("errno")))
    error.errordata = sanitize_errordata(payload.get("errordata"), secrets=secrets)
    raise error


def _failure(endpoint: str, errno: str | None) -> PbxApiError:
    """The error for a ``Failed`` envelope: the class says what the gateway will do about it."""
    meaning = errnos.errno_meaning(errno)
    if errno == errnos.LOCKED_OUT:
        return PbxLockedOutError(
            "the PBX has locked out the gateway's IP address after failed logins (errno 20002); "
            "an administrator can unblock it in the PBX web interface, or wait 10 minutes",
            endpoint=endpoint,
            errno=errno,
            meaning=meaning,
        )
    if endpoint == "login" or errno == errnos.BAD_CREDENTIALS:
        return _login_rejection(endpoint, errno)
    if errno in errnos.TOKEN_ERRNOS:
        return PbxTokenError(
            f"{endpoint}: {meaning} (errno {errno})",
            endpoint=endpoint,
            errno=errno,
            meaning=meaning,
        )
    if errno in errnos.TRANSIENT_ERRNOS:
        return PbxTransientError(
            f"the PBX could not handle {endpoint} right now: {meaning} (errno {errno}); "
            "this usually passes, try again shortly",
            endpoint=endpoint,
            errno=errno,
            meaning=meaning,
        )
    suffix = f" (errno {errno})" if errno is not None else ""
    return PbxApiError(
        f"the PBX refused {endpoint}: {meaning}{suffix}; {errnos.errno_advice(errno)}",
        endpoint=endpoint,
        errno=errno,
        meaning=meaning,
    )


def _login_rejection(endpoint: str, errno: str | None) -> PbxAuthError:
    """Any ``Failed`` login but a lockout is a rejection, whatever its errno.

    The PBX counts failed logins toward its lockout, and firmware does not agree on the errno
    of a bad password (20003 by S-Series v1, 30003 in K2 v1's own example, ``pbx-api.md``,
    "Login rejections are not always 20003"), so an errno that elsewhere means "the PBX is
    struggling" is read here as "maybe a rejection": the login guard counts it and the
    gateway does not retry it blindly.
    """
    meaning = errnos.errno_meaning(errno)
    if errno == errnos.BAD_CREDENTIALS:
        return PbxAuthError(
            "the PBX rejected the gateway's credentials (errno 20003); fix PBX_USERNAME and "
            "the password setting, and check the API user is enabled on the PBX",
            endpoint=endpoint,
            errno=errno,
            meaning=meaning,
        )
    answer = f"errno {errno} ({meaning} on other calls)" if errno is not None else "no errno"
    return PbxAuthError(
        f"the PBX refused the gateway's login with {answer}; some firmware answers wrong "
        "credentials this way, so the gateway counts it as a rejected login and does not "
        "retry it at once: check PBX_USERNAME and the password setting, and that the API user "
        "is enabled on the PBX (Settings > PBX > General > API)",
        endpoint=endpoint,
        errno=errno,
        meaning=meaning,
    )
