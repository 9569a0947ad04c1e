"""PbxClient: the request it sends, and every answer it can get, decoded or translated."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gateway.errors import (
    PbxApiError,
    PbxAuthError,
    PbxBusyError,
    PbxCircuitOpenError,
    PbxConnectionError,
    PbxError,
    PbxLockedOutError,
    PbxProtocolError,
    PbxTimeoutError,
    PbxTokenError,
    PbxTransientError,
    PbxUnavailableError,
)
from gateway.pbx.breaker import CircuitBreaker, CircuitState
from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.limiter import PbxLimiter
from tests.pbx_fakes import BASE_URL, FakePbx, failed, ok, pbx_client


def answering(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers each request with the next response, and the requests seen."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handler), seen


def raising(exc_type: type[httpx.TransportError]) -> tuple[httpx.MockTransport, list[int]]:
    """A transport whose every request fails with ``exc_type``, and a call counter."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise exc_type("simulated", request=request)

    return httpx.MockTransport(handler), calls


async def call_with(
    transport: httpx.MockTransport, endpoint: str = "conference/query"
) -> dict[str, object]:
    async with pbx_client(transport) as client:
        return await client.call(endpoint, {"number": "6400"}, token="t0k3n")


# --- the request ---------------------------------------------------------------------------


async def test_client_request_shape_is_post_json_with_token_in_query() -> None:
    """A call is a POST to /api/v2.0.0/<endpoint>?token=... with a JSON body and content-type."""
    transport, seen = answering(ok(conferences=[]))
    await call_with(transport)
    assert len(seen) == 1
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/api/v2.0.0/conference/query"
    assert dict(request.url.params) == {"token": "t0k3n"}
    assert json.loads(request.content) == {"number": "6400"}
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert str(request.url).startswith(BASE_URL + "/api/v2.0.0/")


async def test_client_login_request_carries_no_token() -> None:
    """A call without a token (login) has no query string at all."""
    transport, seen = answering(ok(token="x"))
    async with pbx_client(transport) as client:
        await client.call("login", {"username": "api", "password": "0" * 32})
    assert seen[0].url.query == b""
    assert "token" not in seen[0].url.params


async def test_client_call_without_body_sends_empty_content() -> None:
    """A body of None (logout) sends an empty POST body."""
    transport, seen = answering(ok())
    async with pbx_client(transport) as client:
        await client.call("logout", None, token="t")
    assert seen[0].content == b""
    assert seen[0].method == "POST"


async def test_client_base_url_has_no_trailing_slash() -> None:
    """base_url is the configured PBX URL, for messages."""
    transport, _ = answering(ok())
    async with pbx_client(transport) as client:
        assert client.base_url == BASE_URL


# --- successful answers --------------------------------------------------------------------


async def test_client_success_returns_envelope_with_extra_keys() -> None:
    """A Success envelope comes back whole; unknown extra keys are tolerated."""
    transport, _ = answering(ok(conferences=[], extra="kept", nested={"a": 1}))
    payload = await call_with(transport)
    assert payload == {"status": "Success", "conferences": [], "extra": "kept", "nested": {"a": 1}}


async def test_client_failed_with_extra_keys_still_decodes_errno() -> None:
    """A Failed envelope with extra keys (errordata) is judged by its errno only."""
    transport, _ = answering(
        httpx.Response(200, json={"status": "Failed", "errno": "10004", "errordata": ["x"]})
    )
    with pytest.raises(PbxApiError) as info:
        await call_with(transport)
    assert info.value.errno == "10004"


# --- bodies that are not the API -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"\x00\xff\xfe garbage \x80\x81", "application/octet-stream"),
        (b'{"status": "Success", "confer', "application/json"),
        (b"<html><body><h1>Login</h1></body></html>", "text/html"),
        (b"", "application/json"),
        (b"Success", "text/plain"),
    ],
    ids=["garbage", "truncated-json", "html", "empty", "bare-word"],
)
async def test_client_non_json_body_raises_protocol_error(
    content: bytes, content_type: str
) -> None:
    """A 200 whose body is not JSON is a PbxProtocolError that says how many bytes came."""
    transport, _ = answering(
        httpx.Response(200, content=content, headers={"content-type": content_type})
    )
    with pytest.raises(PbxProtocolError) as info:
        await call_with(transport)
    assert info.value.extensions["code"] == "PBX_UNAVAILABLE"
    assert info.value.endpoint == "conference/query"
    assert f"{len(content)} bytes" in info.value.message
    assert content_type in info.value.message


async def test_client_body_with_broken_content_encoding_raises_protocol_error() -> None:
    """Garbage declared as gzip (a broken proxy) is a PbxProtocolError, not a raw httpx error."""
    # A raw stream, as off a socket: httpx decodes it inside the client, not here.
    raw = httpx.ByteStream(b"\x1f\x8b not gzip")
    transport, _ = answering(httpx.Response(200, stream=raw, headers={"content-encoding": "gzip"}))
    with pytest.raises(PbxProtocolError) as info:
        await call_with(transport)
    assert isinstance(info.value.__cause__, httpx.DecodingError)
    assert info.value.extensions["code"] == "PBX_UNAVAILABLE"


@pytest.mark.parametrize(
    "payload",
    [["status", "Success"], "Success", 42, None],
    ids=["array", "string", "number", "null"],
)
async def test_client_json_that_is_not_an_object_raises_protocol_error(payload: object) -> None:
    """JSON that is not an object (an array, a string...) is a PbxProtocolError."""
    transport, _ = answering(httpx.Response(200, content=json.dumps(payload).encode()))
    with pytest.raises(PbxProtocolError) as info:
        await call_with(transport)
    assert "not an object" in info.value.message


@pytest.mark.parametrize(
    "status",
    ["OK", "success", "", None, 1],
    ids=["OK", "lowercase", "empty", "missing", "number"],
)
async def test_client_unknown_status_raises_protocol_error(status: object) -> None:
    """A status other than exactly Success or Failed is a PbxProtocolError."""
    body = {"token": "x"} if status is None else {"status": status, "token": "x"}
    transport, _ = answering(httpx.Response(200, json=body))
    with pytest.raises(PbxProtocolError) as info:
        await call_with(transport)
    assert "unknown status" in info.value.message


# --- HTTP statuses -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 404, 401, 204])
async def test_client_non_200_raises_protocol_error(status: int) -> None:
    """Any HTTP status but 200 is a PbxProtocolError naming the status, even with a JSON body."""
    transport, _ = answering(httpx.Response(status, json={"status": "Success"}))
    with pytest.raises(PbxProtocolError) as info:
        await call_with(transport)
    assert f"HTTP {status}" in info.value.message
    assert info.value.extensions == {"code": "PBX_UNAVAILABLE"}


async def test_client_redirect_is_not_followed() -> None:
    """A 302 (port 80 -> 8088) is reported, not followed: the PBX sees exactly one request."""
    transport, seen = answering(
        httpx.Response(302, headers={"location": "https://pbx.test:8088/api/v2.0.0/login"}),
        ok(token="never"),
    )
    with pytest.raises(PbxProtocolError) as info:
        await call_with(transport, "login")
    assert len(seen) == 1
    assert "HTTP 302" in info.value.message


# --- transport failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
async def test_client_timeout_raises_timeout_error(exc_type: type[httpx.TransportError]) -> None:
    """Every httpx timeout is a PbxTimeoutError (code PBX_UNAVAILABLE), chained to the cause."""
    transport, calls = raising(exc_type)
    with pytest.raises(PbxTimeoutError) as info:
        await call_with(transport)
    assert len(calls) == 1
    assert isinstance(info.value.__cause__, exc_type)
    assert info.value.extensions["code"] == "PBX_UNAVAILABLE"
    assert exc_type.__name__ in info.value.message
    assert "PBX_TIMEOUT" in info.value.hint  # the operator's hint, for the log only
    assert "PBX_TIMEOUT" not in info.value.message


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError, httpx.WriteError],
    ids=["reset", "remote-protocol", "refused", "write"],
)
async def test_client_connection_failure_raises_connection_error(
    exc_type: type[httpx.TransportError],
) -> None:
    """Refused and reset connections are a PbxConnectionError whose log hint names PBX_URL."""
    transport, calls = raising(exc_type)
    with pytest.raises(PbxConnectionError) as info:
        await call_with(transport)
    assert not isinstance(info.value, PbxTimeoutError)
    assert len(calls) == 1
    assert isinstance(info.value.__cause__, exc_type)
    assert info.value.extensions["code"] == "PBX_UNAVAILABLE"
    assert "PBX_URL" in info.value.hint
    assert "PBX_URL" not in info.value.message
    assert "t0k3n" not in info.value.log_line


# --- Failed envelopes ----------------------------------------------------------------------


@pytest.mark.parametrize("errno", ["20004", 20004, " 20004 "], ids=["str", "int", "padded"])
async def test_client_errno_as_string_or_int_is_read_the_same(errno: object) -> None:
    """errno "20004" and 20004 both become a PbxTokenError with errno "20004"."""
    transport, _ = answering(httpx.Response(200, json={"status": "Failed", "errno": errno}))
    with pytest.raises(PbxTokenError) as info:
        await call_with(transport)
    assert info.value.errno == "20004"


@pytest.mark.parametrize("errno", [None, "", "abc", True, 3.5, ["20004"]])
async def test_client_failed_without_readable_errno_is_api_error(errno: object) -> None:
    """Failed with no (or an unreadable) errno is a plain PbxApiError with errno None."""
    body: dict[str, object] = {"status": "Failed"}
    if errno is not None:
        body["errno"] = errno
    transport, _ = answering(httpx.Response(200, json=body))
    with pytest.raises(PbxApiError) as info:
        await call_with(transport)
    assert type(info.value) is PbxApiError
    assert info.value.errno is None
    assert info.value.extensions == {"code": "PBX_ERROR", "errno": None}
    assert "without an errno" in info.value.message


@pytest.mark.parametrize(
    ("errno", "error_class", "code"),
    [
        ("20003", PbxAuthError, "PBX_AUTH_FAILED"),
        ("20002", PbxLockedOutError, "PBX_LOCKED_OUT"),
        ("20004", PbxTokenError, "PBX_ERROR"),
        ("20005", PbxTokenError, "PBX_ERROR"),
        ("20006", PbxTokenError, "PBX_ERROR"),
        ("20010", PbxTransientError, "PBX_UNAVAILABLE"),
        ("30001", PbxTransientError, "PBX_UNAVAILABLE"),
        ("30003", PbxTransientError, "PBX_UNAVAILABLE"),
        ("10004", PbxApiError, "PBX_ERROR"),
        ("10003", PbxApiError, "PBX_ERROR"),
        ("10039", PbxApiError, "PBX_ERROR"),
    ],
)
async def test_client_errno_maps_to_error_class_and_code(
    errno: str, error_class: type[PbxApiError], code: str
) -> None:
    """Each errno becomes its error class, with the GraphQL code and errno in extensions."""
    transport, _ = answering(failed(errno))
    with pytest.raises(PbxApiError) as info:
        await call_with(transport)
    assert type(info.value) is error_class
    assert info.value.extensions == {"code": code, "errno": errno}
    assert info.value.errno == errno


@pytest.mark.parametrize(
    "errno", ["20003", "30003", "20010", "30001", "20004", "10004", "39999", None]
)
async def test_client_failed_login_is_a_rejection_whatever_the_errno(errno: str | None) -> None:
    """A login answered Failed is a PbxAuthError (counted by the login guard) whatever its
    errno, none included; the message names the errno and the settings to check."""
    body: dict[str, object] = {"status": "Failed"}
    if errno is not None:
        body["errno"] = errno
    transport, _ = answering(httpx.Response(200, json=body))
    with pytest.raises(PbxAuthError) as info:
        await call_with(transport, "login")
    assert info.value.errno == errno
    assert info.value.extensions["code"] == "PBX_AUTH_FAILED"
    assert "PBX_USERNAME" in info.value.message
    assert (errno or "no errno") in info.value.message


async def test_client_errno_30003_on_a_query_stays_transient() -> None:
    """30003 on a query is the PBX's passing fault (API process not running), not a rejection."""
    transport, _ = answering(failed("30003"))
    with pytest.raises(PbxTransientError) as info:
        await call_with(transport, "conference/query")
    assert info.value.extensions["code"] == "PBX_UNAVAILABLE"


async def test_client_lockout_on_login_stays_a_lockout() -> None:
    """20002 on a login is still the lockout, not a rejection."""
    transport, _ = answering(failed("20002"))
    with pytest.raises(PbxLockedOutError):
        await call_with(transport, "login")


async def test_client_transient_errno_is_also_unavailable() -> None:
    """A transient errno is both a PbxApiError and a PbxUnavailableError (may pass)."""
    transport, _ = answering(failed("30003"))
    with pytest.raises(PbxUnavailableError) as info:
        await call_with(transport)
    assert isinstance(info.value, PbxApiError)
    assert "30003" in info.value.message


async def test_client_undocumented_errno_is_named_in_message() -> None:
    """An errno missing from the table is reported as undocumented, with its number."""
    transport, _ = answering(failed("10039"))
    with pytest.raises(PbxApiError) as info:
        await call_with(transport)
    assert "undocumented errno 10039" in info.value.message
    assert info.value.meaning == "undocumented errno 10039"


async def test_client_auth_and_lockout_messages_say_what_to_do() -> None:
    """20003 names the settings to fix; 20002 says the address is locked out."""
    transport, _ = answering(failed("20003"), failed("20002"))
    async with pbx_client(transport) as client:
        with pytest.raises(PbxAuthError) as auth:
            await client.call("login", {})
        with pytest.raises(PbxLockedOutError) as locked:
            await client.call("login", {})
    assert "PBX_USERNAME" in auth.value.message
    assert "locked out" in locked.value.message


async def test_client_errors_name_the_endpoint() -> None:
    """Every PbxError carries the endpoint it was calling."""
    transport, _ = answering(failed("10004"), httpx.Response(500))
    async with pbx_client(transport) as client:
        for _ in range(2):
            with pytest.raises(PbxError) as info:
                await client.call("heartbeat", {}, token="t")
            assert info.value.endpoint == "heartbeat"


# --- concurrency ---------------------------------------------------------------------------


async def test_client_concurrency_cap_holds() -> None:
    """With max_concurrency=2, ten concurrent calls never put more than two in flight."""
    release = asyncio.Event()
    pbx = FakePbx(gate=release)
    pbx.tokens.add("t")
    async with pbx_client(pbx.transport(), max_concurrency=2) as client:
        calls = [asyncio.create_task(client.call("heartbeat", {}, token="t")) for _ in range(10)]
        for _ in range(100):
            if pbx.in_flight == 2:
                break
            await asyncio.sleep(0)
        assert pbx.in_flight == 2
        release.set()
        results = await asyncio.gather(*calls)
    assert len(results) == 10
    assert pbx.count("heartbeat") == 10
    assert pbx.max_in_flight == 2


async def test_client_failed_call_releases_its_slot() -> None:
    """A call that fails gives its slot back: later calls still go through."""
    transport, calls = raising(httpx.ConnectError)
    async with pbx_client(transport, max_concurrency=1) as client:
        for _ in range(5):
            with pytest.raises(PbxConnectionError):
                await client.call("heartbeat", {}, token="t")
    assert len(calls) == 5


# --- retry, breaker and wait queue as the client uses them ---------------------------------


def flaky(
    first: type[httpx.TransportError], then: httpx.Response
) -> tuple[httpx.MockTransport, list[int]]:
    """A transport that fails the first request with ``first`` and answers ``then`` after."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise first("simulated", request=request)
        return then

    return httpx.MockTransport(handler), calls


async def test_client_idempotent_call_retries_lost_connection_once() -> None:
    """An idempotent call whose connection broke is sent once more and its answer returned."""
    transport, calls = flaky(httpx.ReadError, ok(conferences=[]))
    async with pbx_client(transport) as client:
        payload = await client.call("conference/query", {"number": "all"}, idempotent=True)
    assert payload["status"] == "Success"
    assert len(calls) == 2


async def test_client_idempotent_call_gives_up_after_one_retry() -> None:
    """Two lost connections in a row raise PbxConnectionError after exactly two requests."""
    transport, calls = raising(httpx.ReadError)
    async with pbx_client(transport) as client:
        with pytest.raises(PbxConnectionError):
            await client.call("conference/query", {"number": "all"}, idempotent=True)
    assert len(calls) == 2


async def test_client_non_idempotent_call_is_never_retried() -> None:
    """A call not marked idempotent (login, logout) is sent once, whatever happens."""
    transport, calls = flaky(httpx.ReadError, ok(token="x"))
    async with pbx_client(transport) as client:
        with pytest.raises(PbxConnectionError):
            await client.call("login", {"username": "api", "password": "0" * 32})
    assert len(calls) == 1


async def test_client_idempotent_call_does_not_retry_timeout() -> None:
    """A timeout is not retried: the PBX may still be working on it."""
    transport, calls = flaky(httpx.ReadTimeout, ok())
    async with pbx_client(transport) as client:
        with pytest.raises(PbxTimeoutError):
            await client.call("conference/query", {"number": "all"}, idempotent=True)
    assert len(calls) == 1


async def test_client_open_breaker_refuses_without_calling_the_pbx() -> None:
    """After the breaker's threshold of unusable answers, calls fail at once with no request."""
    transport, calls = raising(httpx.ConnectError)
    async with build_http_client(
        base_url=BASE_URL, timeout=5.0, verify=True, transport=transport
    ) as http:
        client = PbxClient(http, breaker=CircuitBreaker(threshold=2, cooldown=30.0))
        for _ in range(2):
            with pytest.raises(PbxConnectionError):
                await client.call("heartbeat", {}, token="t")
        with pytest.raises(PbxCircuitOpenError) as info:
            await client.call("heartbeat", {}, token="t")
    assert len(calls) == 2
    assert info.value.extensions["code"] == "PBX_UNAVAILABLE"


async def test_client_failed_errno_does_not_open_breaker() -> None:
    """A decoded Failed answer proves the PBX is there: it never opens the breaker."""
    transport, _ = answering(*(failed("10004") for _ in range(5)))
    async with build_http_client(
        base_url=BASE_URL, timeout=5.0, verify=True, transport=transport
    ) as http:
        client = PbxClient(http, breaker=CircuitBreaker(threshold=2, cooldown=30.0))
        for _ in range(5):
            with pytest.raises(PbxApiError):
                await client.call("conference/query", {"number": "1"}, token="t")
        assert client.breaker.state is CircuitState.CLOSED


async def test_client_full_wait_queue_refuses_with_busy() -> None:
    """Beyond max_concurrency running and max_waiting queued, a call is refused (PBX_BUSY)."""
    release = asyncio.Event()
    pbx = FakePbx(gate=release)
    pbx.tokens.add("t")
    async with build_http_client(
        base_url=BASE_URL, timeout=5.0, verify=True, transport=pbx.transport()
    ) as http:
        client = PbxClient(http, limiter=PbxLimiter(max_concurrency=1, max_waiting=2))
        admitted = [asyncio.create_task(client.call("heartbeat", {}, token="t")) for _ in range(3)]
        for _ in range(100):
            if client.limiter.waiting == 2:
                break
            await asyncio.sleep(0)
        with pytest.raises(PbxBusyError) as info:
            await client.call("heartbeat", {}, token="t")
        release.set()
        await asyncio.gather(*admitted)
    assert info.value.extensions["code"] == "PBX_BUSY"
    assert pbx.count("heartbeat") == 3
    assert pbx.max_in_flight == 1
