"""Fuzzing the HTTP surface: whatever arrives, the gateway answers coded JSON and leaks nothing.

One gateway (API-key mode, GraphiQL and batching on) serves on a loopback socket for the
whole module, from an event loop the test drives, with the simulator in-process behind a
transport that records every PBX token it sees. Hypothesis sends it GraphQL-ish documents,
JSON of every shape, raw bytes, wrong content types, GET parameters and junk credentials.
For each answer: no 5xx; JSON (or the IDE page for a browser's GET); every error coded, and
none INTERNAL_ERROR (a bug) or PBX_* (the simulator is healthy); and no PBX token, password,
password MD5, client key or traceback in the answer, nor any secret in a log line.
Each request has a timeout, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.security.identity import ALL_SCOPES
from gateway.serving import LoopbackServer
from gateway.simulator import DEMO_PASSWORD, create_simulator_app, password_digest
from tests.security_helpers import api_key_security, write_keys

FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same cases on every run: CI failures reproduce
    database=None,
    report_multiple_bugs=False,  # shrink one failure, not every kind found (each step is a request)
    phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],  # no slow "explain"
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- the target ----------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests to ``inner`` and remembers every PBX token that goes by."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.tokens: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("token")
        if token:
            self.tokens.add(token)
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        with contextlib.suppress(ValueError):
            data = json.loads(body)
            if isinstance(data, dict) and isinstance(data.get("token"), str):
                self.tokens.add(data["token"])
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )


@dataclasses.dataclass
class Target:
    """The running gateway, the key a legitimate client holds, and what must never leak.

    The gateway serves from an event loop the test's thread owns and runs only while a
    request is in flight, so each example is one request, start to end.
    """

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    key: str
    recorder: RecordingTransport

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, given up (failing the test) if it takes more than 15 s."""
        call = self.client.request(method, url, **kwargs)
        return self.loop.run_until_complete(asyncio.wait_for(call, timeout=15))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def secrets(self) -> list[str]:
        assert self.recorder.tokens, "no PBX token was seen: the leak check would be empty"
        md5 = password_digest(DEMO_PASSWORD)
        return [*self.recorder.tokens, DEMO_PASSWORD, md5, md5.upper(), self.key, "Traceback"]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One gateway for the module: API keys, GraphiQL, batching (5), default limits."""
    stored, plain = write_keys(tmp_path_factory.mktemp("keys"), {"fuzzer": sorted(ALL_SCOPES)})
    recorder = RecordingTransport(httpx.ASGITransport(app=create_simulator_app()))
    gateway_settings = dataclasses.replace(
        demo_settings("http://pbx.test"),
        security=api_key_security(stored, graphiql=True, batching=True, max_batch=5),
    )
    # The server ``pbx-gateway serve`` runs (signals left to the test runner), in a loop
    # this fixture owns.
    server = LoopbackServer(create_app(gateway_settings, transport=recorder))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    client = httpx.AsyncClient(base_url=server.base_url, timeout=10)
    try:
        fuzz_target = Target(loop, client, plain["fuzzer"], recorder)
        warm = fuzz_target.post(
            "/graphql",
            json={"query": '{ conference(number: "6402") { participantPassword } }'},
            headers={"X-API-Key": plain["fuzzer"]},
        )
        assert warm.json() == {"data": {"conference": {"participantPassword": "1234"}}}
        yield fuzz_target
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(server.stop())
        loop.close()


# --- what every answer must be -------------------------------------------------------------


def check(target: Target, response: httpx.Response, *, ide_allowed: bool = False) -> None:
    """No 5xx; coded JSON (or the IDE page when allowed); no secret anywhere in it."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    everything = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for secret in target.secrets():
        assert secret not in everything, f"{secret[:6]}... leaked: {response.text[:300]}"
    media = response.headers.get("content-type", "")
    if media.startswith("text/html"):
        assert ide_allowed, response.text[:300]
        assert "graphiql" in response.text.lower()
        return
    if media.startswith("multipart/mixed"):  # a subscription stream: each part's payload
        answers = [part["payload"] for part in multipart_parts(response.text) if part]
    else:
        assert "json" in media, (response.status_code, media, response.text[:300])
        body = response.json()
        answers = body if isinstance(body, list) else [body]
    for answer in answers:
        assert isinstance(answer, dict), body
        assert "data" in answer or "errors" in answer, answer
        for error in answer.get("errors") or []:
            assert isinstance(error["message"], str), error
            code = (error.get("extensions") or {}).get("code")
            assert isinstance(code, str), error
            # INTERNAL_ERROR means a bug in the gateway (README); the simulator is healthy,
            # so no PBX error code is expected either.
            assert code != "INTERNAL_ERROR" and not code.startswith("PBX_"), error


def multipart_parts(text: str) -> list[dict[str, Any]]:
    """The JSON parts of a multipart subscription answer (boundary ``graphql``)."""
    parts = []
    for chunk in text.split("--graphql"):
        _, _, body = chunk.partition("\r\n\r\n")
        if body.strip():
            parts.append(json.loads(body))
    return parts


def check_logs(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    """No log line of the gateway (or httpx under it) holds a secret."""
    formatter = logging.Formatter("%(name)s %(message)s")
    secrets = [s for s in target.secrets() if s != "Traceback"]  # tracebacks belong in logs
    for record in caplog.records:
        if record.name.startswith("gateway.simulator"):
            continue  # the stand-in PBX is not the gateway
        line = formatter.format(record)
        for secret in secrets:
            assert secret not in line, f"{secret[:6]}... in the log: {line[:300]}"


# --- strategies ----------------------------------------------------------------------------

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
FIELDS = [
    "number",
    "name",
    "participantPassword",
    "moderatorPassword",
    "hasParticipantPassword",
    "hasModeratorPassword",
    "waitForModerator",
    "allowInvite",
    "moderators",
    "musicOnHold",
    "mute",
    "prompt",
    "__typename",
]
NUMBERISH = st.one_of(
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    st.sampled_from(["6400", "6401", "6411", "all", "6400,6401", " 6400", "", "٦٤٠٠", "0x19"]),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | NUMBERISH,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
GRAPHQL_SCALARS = st.one_of(
    NUMBERISH.map(json.dumps),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false", "null", "DEFAULT", "EXTEN", "$v", "$n", "$missing"]),
)
GRAPHQL_VALUES = st.recursive(
    GRAPHQL_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(NAME, inner, max_size=3).map(
            lambda fields: "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"
        ),
    ),
    max_leaves=8,
)


@st.composite
def selection(draw: st.DrawFn, depth: int = 0) -> str:
    """A selection set on Conference: known and unknown fields, fragments, bad nesting."""
    items = draw(st.lists(st.sampled_from(FIELDS) | NAME, min_size=0, max_size=6))
    if draw(st.booleans()):
        items.append("...F")
    if draw(st.booleans()):
        items.append("... on Conference { number }")
    if depth < 2 and draw(st.integers(0, 5)) == 0:
        items.append(f"{draw(st.sampled_from(FIELDS))} {draw(selection(depth + 1))}")
    if draw(st.integers(0, 6)) == 0:
        items = [f"{draw(NAME)}: {item}" for item in items]
    return "{ " + " ".join(items) + " }"


@st.composite
def root_field(draw: st.DrawFn) -> str:
    """One root field: conference/conferences with odd arguments, or something else."""
    kind = draw(
        st.sampled_from(["conference", "conferences", "all", "typename", "schema", "unknown"])
    )
    alias = draw(st.none() | NAME)
    prefix = f"{alias}: " if alias else ""
    if kind == "conference":
        argument = draw(st.sampled_from(["number", "numbers"]) | NAME)
        body = f"conference({argument}: {draw(GRAPHQL_VALUES)}) {draw(selection())}"
    elif kind == "conferences":
        argument = draw(st.sampled_from(["numbers", "number"]) | NAME)
        body = f"conferences({argument}: {draw(GRAPHQL_VALUES)}) {draw(selection())}"
    elif kind == "all":
        body = f"conferences {draw(selection())}"
    elif kind == "typename":
        body = "__typename"
    elif kind == "schema":
        body = draw(
            st.sampled_from(
                ["__schema { types { name } }", '__type(name: "Conference") { fields { name } }']
            )
        )
    else:
        body = f"{draw(NAME)} {draw(st.sampled_from(['', '{ x }']))}"
    return prefix + body


OPERATION_HEADS = [
    "",
    "query ",
    "query Q ",
    "query Q($v: String!) ",
    "query($v: [String!], $n: Int) ",
    "query($v: String = 5) ",
    "mutation ",
    "subscription ",
    "query Q @skip(if: true) ",
]
FRAGMENTS = [
    "",
    " fragment F on Conference { number name }",
    " fragment F on Conference { ...F }",
    " fragment F on Query { __typename }",
    " fragment F on Conference { number } fragment F on Conference { name }",
]


@st.composite
def document(draw: st.DrawFn) -> str:
    """A GraphQL-ish document, sometimes cut short or with a stray character."""
    roots = draw(st.lists(root_field(), min_size=1, max_size=5))
    text = (
        draw(st.sampled_from(OPERATION_HEADS))
        + "{ "
        + " ".join(roots)
        + " }"
        + draw(st.sampled_from(FRAGMENTS))
    )
    damage = draw(st.integers(0, 9))
    if damage == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == 1:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:]
    return text


@st.composite
def graphql_request(draw: st.DrawFn) -> dict[str, Any]:
    """A request object around a document, with variables and operationName of any type."""
    request: dict[str, Any] = {"query": draw(document())}
    if draw(st.booleans()):
        request["variables"] = draw(
            st.fixed_dictionaries({}, optional={"v": JSON_VALUES, "n": JSON_VALUES}) | JSON_VALUES
        )
    if draw(st.integers(0, 3)) == 0:
        request["operationName"] = draw(st.sampled_from(["Q", "X", ""]) | JSON_VALUES)
    return request


JSON_BODIES = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "query": JSON_VALUES | document(),
            "variables": JSON_VALUES,
            "operationName": JSON_VALUES,
            "extensions": JSON_VALUES,
        },
    ).map(json.dumps),
    st.lists(graphql_request() | JSON_VALUES, max_size=7).map(json.dumps),
    st.lists(st.fixed_dictionaries({"query": JSON_VALUES}), min_size=1, max_size=3).map(json.dumps),
    # Fixed depths, far from the decoder's recursion limit on either side, so the outcome
    # never depends on how deep the server's stack happens to be.
    st.sampled_from([1, 30, 5000, 20000]).map(lambda depth: "[" * depth + "]" * depth),
    st.sampled_from([1, 30, 5000, 20000]).map(lambda depth: '{"query": ' + "[" * depth),
    JSON_VALUES.map(json.dumps).flatmap(
        lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])
    ),
).map(lambda text: text.encode("utf-8", "surrogatepass"))

CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/json; charset=utf-16",
            "application/graphql",
            "application/graphql-response+json",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/html",
            "application/jsonx",
            "*/*",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
)
ACCEPTS = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/graphql-response+json",
            "text/html",
            "text/html,application/xhtml+xml,*/*;q=0.8",
            "*/*",
            "text/plain",
            "application/xml",
            "multipart/mixed",
            "text/event-stream",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
        str.strip
    ),
)
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=120
)


def json_post(
    target: Target, body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return target.post(
        "/graphql",
        content=body,
        headers={"X-API-Key": target.key, "Content-Type": content_type},
    )


# --- the fuzz tests ------------------------------------------------------------------------


@settings(FUZZ, max_examples=450)
@given(request=graphql_request())
def test_fuzz_graphql_documents_are_answered_coded(
    target: Target, caplog: pytest.LogCaptureFixture, request: dict[str, Any]
) -> None:
    """Generated documents, variables and operation names: coded JSON, nothing leaked."""
    caplog.clear()  # each example checks its own log lines (keeps the check linear)
    caplog.set_level(logging.DEBUG)
    response = target.post("/graphql", json=request, headers={"X-API-Key": target.key})
    check(target, response)
    check_logs(target, caplog)


@settings(FUZZ, max_examples=400)
@given(body=JSON_BODIES)
def test_fuzz_json_bodies_of_any_shape_are_answered_coded(
    target: Target, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    """Any JSON value, truncated JSON, batches of anything, deep nesting: coded, never 5xx."""
    caplog.clear()  # each example checks its own log lines (keeps the check linear)
    caplog.set_level(logging.DEBUG)
    check(target, json_post(target, body))
    check_logs(target, caplog)


@settings(FUZZ, max_examples=300)
@given(body=st.binary(max_size=600), content_type=CONTENT_TYPES)
def test_fuzz_random_bytes_are_answered_coded(
    target: Target, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    """Random bytes under any content type: coded JSON, never 5xx."""
    caplog.clear()  # each example checks its own log lines (keeps the check linear)
    caplog.set_level(logging.DEBUG)
    check(target, json_post(target, body, content_type))
    check_logs(target, caplog)


@settings(FUZZ, max_examples=100)
@given(content_type=CONTENT_TYPES)
def test_fuzz_wrong_content_types_are_answered_coded(
    target: Target, caplog: pytest.LogCaptureFixture, content_type: str
) -> None:
    """A good JSON body declared as anything else: coded JSON, never 5xx."""
    caplog.clear()  # each example checks its own log lines (keeps the check linear)
    caplog.set_level(logging.DEBUG)
    body = b'{"query": "{ conference(number: \\"6400\\") { number } }"}'
    check(target, json_post(target, body, content_type))
    check_logs(target, caplog)


GET_PARAMS = st.dictionaries(
    st.sampled_from(["query", "variables", "operationName", "extensions"]) | st.text(max_size=8),
    st.one_of(document(), JSON_VALUES.map(json.dumps), st.text(max_size=60)),
    max_size=4,
)


@settings(FUZZ, max_examples=300)
@given(params=GET_PARAMS, accept=ACCEPTS, with_key=st.booleans())
def test_fuzz_get_requests_are_answered_coded(
    target: Target,
    caplog: pytest.LogCaptureFixture,
    params: dict[str, str],
    accept: str,
    with_key: bool,
) -> None:
    """GET with random parameters and Accept headers: coded JSON, or the IDE page."""
    caplog.clear()  # each example checks its own log lines (keeps the check linear)
    caplog.set_level(logging.DEBUG)
    headers = {"Accept": accept, **({"X-API-Key": target.key} if with_key else {})}
    response = target.get("/graphql", params=params, headers=headers)
    check(target, response, ide_allowed="html" in accept or "*/*" in accept)
    check_logs(target, caplog)


CREDENTIALS = st.one_of(
    HEADER_TEXT.map(lambda text: {"Authorization": f"Bearer {text}"}),
    HEADER_TEXT.map(lambda text: {"Authorization": text}),
    HEADER_TEXT.map(lambda text: {"Authorization": f"Basic {text}"}),
    HEADER_TEXT.map(lambda text: {"X-API-Key": text}),
    st.tuples(HEADER_TEXT, HEADER_TEXT).map(
        lambda pair: {"X-API-Key": pair[0], "Authorization": f"Bearer {pair[1]}"}
    ),
    st.just({"Authorization": "Bearer"}),
)


@settings(FUZZ, max_examples=400)
@given(credentials=CREDENTIALS)
def test_fuzz_junk_credentials_are_refused_without_echo(
    target: Target, caplog: pytest.LogCaptureFixture, credentials: dict[str, str]
) -> None:
    """Junk Authorization / X-API-Key values: 401 UNAUTHENTICATED (or, once the address has
    failed too often, 429 RATE_LIMITED), the junk never echoed."""
    caplog.clear()  # each example checks its own log lines (keeps the check linear)
    caplog.set_level(logging.DEBUG)
    response = target.post(
        "/graphql",
        json={"query": '{ conference(number: "6400") { number } }'},
        headers=credentials,
    )
    check(target, response)
    code = response.json()["errors"][0]["extensions"]["code"]
    assert (response.status_code, code) in {(401, "UNAUTHENTICATED"), (429, "RATE_LIMITED")}
    for value in credentials.values():
        credential = value.removeprefix("Bearer ").removeprefix("Basic ")
        if len(credential) >= 12:
            assert credential not in response.text
            gateway_lines = [r.getMessage() for r in caplog.records if r.name.startswith("gateway")]
            assert all(credential not in line for line in gateway_lines)
    check_logs(target, caplog)


def test_fuzz_target_sees_pbx_tokens(target: Target) -> None:
    """The leak checks above are not vacuous: the recorder holds the PBX token in use."""
    assert target.recorder.tokens
    assert all(len(token) == 32 for token in target.recorder.tokens)


def test_fuzz_keys_file_is_not_served(target: Target, tmp_path: Path) -> None:
    """Nothing under the app serves files: paths that try are 404/405, never a file."""
    for path in ("/graphql/../api-keys.json", "/static/../../etc/passwd", "/.env"):
        response = target.get(path)
        assert response.status_code in {404, 405}, (path, response.status_code)
        assert "sha256" not in response.text
