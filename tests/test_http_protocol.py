"""GraphQL over HTTP, the 2024+ draft: media types, status codes, GET, refusals.

The real gateway over loopback; each test names the rule it checks. ``G`` is
``application/graphql-response+json`` (request errors are 4xx), ``J`` is
``application/json`` (every well-formed request is 200).
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
import pytest

from gateway.media_types import GRAPHQL_RESPONSE_JSON, JSON, is_json_request, negotiate
from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import ROOM_ANSWER, ROOM_QUERY, anonymous_security, codes

G: Final = GRAPHQL_RESPONSE_JSON
J: Final = JSON
BOTH: Final = f"{G}; charset=utf-8, {J}; charset=utf-8"  # what the spec recommends clients send


async def post(stack: Stack, body: Any, accept: str | None = J, **headers: str) -> httpx.Response:
    """POST ``body`` as JSON with ``accept`` (None: no Accept header at all)."""
    request = stack.client.build_request("POST", "/graphql", json=body, headers=headers)
    if accept is None:
        del request.headers["accept"]
    else:
        request.headers["accept"] = accept
    return await stack.client.send(request)


async def get(stack: Stack, accept: str = J, **params: Any) -> httpx.Response:
    """GET with ``params`` in the query string; dict values are sent as JSON."""
    encoded = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    return await stack.client.get("/graphql", params=encoded, headers={"accept": accept})


# --- negotiation (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (G, G),
        (J, J),
        (BOTH, G),
        (f"{J}, {G}", G),  # equal q: the spec's preferred type
        (f"{G};q=0.5, {J}", J),
        (f"{J};q=0.9, {G}", G),
        ("*/*", J),  # legacy clients (curl, browsers' fetch) get what they expect
        ("application/*", J),
        (f"{J}, */*;q=0.1", J),
        (f"{G};q=0, */*", J),
        (None, G),  # no Accept: the spec's default since its 2025-01-01 watershed
        ("", G),
        ("text/html", None),
        (f"text/html, {J};q=0", None),
        ("application/xml, text/plain", None),
        (f"{J};q=abc", None),  # a malformed weight drops the range
    ],
)
def test_negotiate_picks_the_highest_priority_supported_type(
    accept: str | None, chosen: str | None
) -> None:
    """Accept is honoured by q, then specificity; ties favour the named type."""
    assert negotiate(accept) == chosen


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON;charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/json; charset=latin-1", False),
        ("application/json-patch+json", False),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        (None, False),
    ],
)
def test_json_request_content_type(value: str | None, accepted: bool) -> None:
    """A POST body must be application/json, in UTF-8 when a charset is named."""
    assert is_json_request(value) is accepted


# --- media types and status codes -----------------------------------------------------------


@pytest.mark.parametrize(("accept", "media"), [(G, G), (J, J), ("*/*", J), (BOTH, G), (None, G)])
async def test_answer_uses_the_negotiated_media_type(
    gateway_stack: StackFactory, accept: str | None, media: str
) -> None:
    """A successful answer is 200 in the chosen media type, UTF-8 declared."""
    stack = await gateway_stack()
    response = await post(stack, {"query": ROOM_QUERY}, accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media}; charset=utf-8"
    assert response.json() == ROOM_ANSWER


REQUEST_ERRORS: Final = {
    "parse": ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
    "validation": ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
    "variables": (
        {"query": "query Q($n: String!) { conference(number: $n) { name } }", "variables": {}},
        "BAD_USER_INPUT",
    ),
    "operation": ({"query": "query A { __typename }", "operationName": "B"}, None),
}


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_request_error_is_400_with_graphql_response_json(
    gateway_stack: StackFactory, case: str
) -> None:
    """Parse, validation, variable coercion and GetOperation failures: 400, no data entry."""
    stack = await gateway_stack()
    body, code = REQUEST_ERRORS[case]
    response = await post(stack, body, G)
    assert response.status_code == 400
    assert response.headers["content-type"] == f"{G}; charset=utf-8"
    answer = response.json()
    assert "data" not in answer
    assert codes(answer) == [code or "OPERATION_RESOLUTION_FAILURE"]
    assert stack.calls() == 0


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_request_error_is_200_with_application_json(
    gateway_stack: StackFactory, case: str
) -> None:
    """With application/json the same failures are 200 (the legacy rule), still without data."""
    stack = await gateway_stack()
    body, code = REQUEST_ERRORS[case]
    response = await post(stack, body, J)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{J}; charset=utf-8"
    answer = response.json()
    assert "data" not in answer
    assert codes(answer) == [code or "OPERATION_RESOLUTION_FAILURE"]


async def test_field_error_is_a_partial_answer_200_in_both_media_types(
    gateway_stack: StackFactory,
) -> None:
    """A resolver's error (a malformed room number) leaves data in place: 200, not 4xx."""
    stack = await gateway_stack()
    query = '{ good: conference(number: "6400") { name } bad: conference(number: "64x") { name } }'
    for accept in (G, J):
        response = await post(stack, {"query": query}, accept)
        assert response.status_code == 200
        answer = response.json()
        assert answer["data"] == {"good": {"name": "Sales"}, "bad": None}
        assert codes(answer) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"query": ', "JSON"),
        (b"", "JSON"),
        (b'{"qeury": "{ __typename }"}', "query"),
        (b'{"query": 7}', "query"),
        (b'{"query": "{ __typename }", "variables": [7]}', "variables"),
        (b'{"query": "{ __typename }", "extensions": "x"}', "extensions"),
        (b'{"query": "{ __typename }", "operationName": 0}', "operationName"),
        (b'{"query": "{ __typename }", "operationName": {"a": 1}}', "operationName"),
        (b'{"query": "\xd8\x01"}', "UTF-8"),  # not UTF-8 (json.loads alone would guess)
        (b"[" * 5000 + b"]" * 5000, "JSON"),  # deeper than Python's recursion limit
        (b"7", "JSON object"),
        (b'"{ __typename }"', "JSON object"),
        (b"null", "JSON object"),
    ],
)
async def test_malformed_request_is_400_in_both_media_types(
    gateway_stack: StackFactory, body: bytes, fragment: str
) -> None:
    """Not a well-formed GraphQL-over-HTTP request (bad JSON, wrong parameter types): 400."""
    stack = await gateway_stack()
    for accept in (G, J):
        response = await stack.client.post(
            "/graphql", content=body, headers={"content-type": J, "accept": accept}
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == f"{accept}; charset=utf-8"
        answer = response.json()
        assert codes(answer) == ["BAD_REQUEST"]
        assert fragment in answer["errors"][0]["message"]
        assert "data" not in answer


async def test_an_error_without_a_code_is_masked_as_internal(gateway_stack: StackFactory) -> None:
    """Every error is coded: one raised inside a validation rule (strawberry's depth limiter
    trips over an empty selection set) becomes INTERNAL_ERROR naming the request, 500 with
    graphql-response+json, and its text stays in the log."""
    stack = await gateway_stack()
    document = '{ conference(number: "6400") { a: number { b: number { } } } }'
    for accept in (G, J):
        response = await post(stack, {"query": document}, accept)
        answer = response.json()
        assert codes(answer) in (["INTERNAL_ERROR"], ["GRAPHQL_VALIDATION_FAILED"])
        internal = codes(answer) == ["INTERNAL_ERROR"]  # until strawberry fixes the limiter
        assert response.status_code == {G: 500 if internal else 400, J: 200}[accept]
        assert "max()" not in response.text
    assert stack.calls() == 0


async def test_null_optional_parameters_equal_absent_ones(gateway_stack: StackFactory) -> None:
    """operationName, variables and extensions may be null."""
    stack = await gateway_stack()
    body = {"query": ROOM_QUERY, "operationName": None, "variables": None, "extensions": None}
    response = await post(stack, body, G)
    assert (response.status_code, response.json()) == (200, ROOM_ANSWER)


async def test_accept_without_a_json_type_is_406(gateway_stack: StackFactory) -> None:
    """Accept names nothing the server writes: 406, and the PBX is never asked."""
    stack = await gateway_stack()
    for accept in ("text/html", "application/xml", f"{G};q=0, {J};q=0"):
        response = await post(stack, {"query": ROOM_QUERY}, accept)
        assert response.status_code == 406
        assert codes(response.json()) == ["NOT_ACCEPTABLE"]
    assert stack.calls() == 0


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "application/graphql"],
)
async def test_post_body_that_is_not_json_is_415(
    gateway_stack: StackFactory, content_type: str | None
) -> None:
    """POST must say Content-Type: application/json; anything else (or nothing) is 415."""
    stack = await gateway_stack()
    request = stack.client.build_request(
        "POST", "/graphql", content=json.dumps({"query": ROOM_QUERY}), headers={"accept": G}
    )
    request.headers.pop("content-type", None)
    if content_type is not None:
        request.headers["content-type"] = content_type
    response = await stack.client.send(request)
    assert response.status_code == 415
    assert codes(response.json()) == ["UNSUPPORTED_MEDIA_TYPE"]
    assert stack.calls() == 0


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD"])
async def test_other_methods_are_405_with_allow(gateway_stack: StackFactory, method: str) -> None:
    """Only GET and POST: 405 with Allow: GET, POST."""
    stack = await gateway_stack()
    response = await stack.client.request(method, "/graphql", headers={"accept": J})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


# --- GET -------------------------------------------------------------------------------------


async def test_get_runs_a_query_from_the_query_string(gateway_stack: StackFactory) -> None:
    """query, variables (JSON) and operationName come from the URL."""
    stack = await gateway_stack()
    document = (
        "query Other { __typename } "
        "query Room($n: String!) { conference(number: $n) { number name } }"
    )
    response = await get(stack, G, query=document, variables={"n": "6400"}, operationName="Room")
    assert response.status_code == 200
    assert response.json() == ROOM_ANSWER
    assert stack.calls() == 1


async def test_get_empty_operation_name_means_none(gateway_stack: StackFactory) -> None:
    """operationName= (empty) is the same as leaving it out."""
    stack = await gateway_stack()
    response = await get(stack, J, query=ROOM_QUERY, operationName="")
    assert response.json() == ROOM_ANSWER


async def test_get_extensions_are_json(gateway_stack: StackFactory) -> None:
    """An extensions map in the URL is accepted; one that is not JSON is 400."""
    stack = await gateway_stack()
    ok = await get(stack, J, query=ROOM_QUERY, extensions={"some": "value"})
    assert ok.json() == ROOM_ANSWER
    bad = await get(stack, J, query=ROOM_QUERY, extensions="{not json")
    assert bad.status_code == 400
    assert codes(bad.json()) == ["BAD_REQUEST"]


async def test_get_variables_that_are_not_json_are_400(gateway_stack: StackFactory) -> None:
    """variables in the URL must be a JSON object."""
    stack = await gateway_stack()
    for variables in ("{not json", "[1]", '"text"'):
        response = await get(stack, G, query=ROOM_QUERY, variables=variables)
        assert response.status_code == 400
    assert stack.calls() == 0


async def test_get_null_variables_and_extensions_are_absent(gateway_stack: StackFactory) -> None:
    """variables=null and extensions=null (JSON null) mean the same as leaving them out."""
    stack = await gateway_stack()
    response = await get(stack, G, query=ROOM_QUERY, variables="null", extensions="null")
    assert response.json() == ROOM_ANSWER


async def test_get_without_query_is_400(gateway_stack: StackFactory) -> None:
    """A GET that is not asking for the GraphiQL page must carry a document."""
    stack = await gateway_stack()
    response = await stack.client.get("/graphql", headers={"accept": "*/*"})
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]


async def test_get_graphiql_page_only_for_html(gateway_stack: StackFactory) -> None:
    """A browser asking for HTML without a document gets GraphiQL (when it is on); with a
    document in the URL the same browser gets the GraphQL answer."""
    stack = await gateway_stack()
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = await stack.client.get("/graphql", headers={"accept": browser})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    answer = await get(stack, browser, query=ROOM_QUERY)
    assert answer.headers["content-type"] == f"{J}; charset=utf-8"
    assert answer.json() == ROOM_ANSWER


async def test_get_graphiql_off_is_404(gateway_stack: StackFactory) -> None:
    """Without GATEWAY_GRAPHIQL the page does not exist."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    page = await stack.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 404


@pytest.mark.parametrize("accept", [G, J])
async def test_get_mutation_is_405_before_validation(
    gateway_stack: StackFactory, accept: str
) -> None:
    """A mutation over GET is 405 with Allow: POST, even though the schema has no Mutation
    type yet (so validation would have failed): the operation type decides, first."""
    stack = await gateway_stack()
    response = await get(stack, accept, query="mutation { x }")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert codes(response.json()) == ["METHOD_NOT_ALLOWED"]
    assert response.headers["cache-control"] == "no-store"


async def test_get_mutation_chosen_by_operation_name_is_405(gateway_stack: StackFactory) -> None:
    """{query} and {operationName} together decide: naming the mutation of a mixed document
    is 405; naming its query is not (it then fails validation: no Mutation type yet)."""
    stack = await gateway_stack()
    document = f"query Q {ROOM_QUERY} mutation M {{ x }}"
    refused = await get(stack, G, query=document, operationName="M")
    assert refused.status_code == 405
    other = await get(stack, G, query=document, operationName="Q")
    assert other.status_code == 400
    assert codes(other.json()) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_post_mutation_reaches_validation(gateway_stack: StackFactory) -> None:
    """Over POST the same document is a validation error (no Mutation type): 400 with G."""
    stack = await gateway_stack()
    response = await post(stack, {"query": "mutation { x }"}, G)
    assert response.status_code == 400
    assert codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]
