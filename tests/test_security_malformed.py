"""Malformed requests, found by the fuzz tests, kept here as plain cases.

Whatever a client sends, the answer is a coded GraphQL error for the client's mistake:
never a 500 in plain text, never an error without ``extensions.code``, never the text of
an exception inside the gateway, and nothing logged as a bug.
"""

from __future__ import annotations

import logging

import pytest

from gateway.security.identity import READ
from tests.gateway_stack import StackFactory
from tests.security_helpers import anonymous_security, codes

CLIENT_CODES = {"BAD_REQUEST", "BAD_USER_INPUT"}
DOCUMENT_CODES = {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"}

BODIES = {
    "string": b'"{ __typename }"',
    "number": b"6400",
    "null": b"null",
    "boolean": b"true",
    "invalid-utf8": b'{"query": "\xff\xfe"}',
    "nul-bytes": b"\x00" * 9,
    "deeply-nested-array": b"[" * 5000 + b"]" * 5000,
    "deeply-nested-object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "truncated": b'{"query": "{ __typename }"',
}


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_malformed_json_body_is_a_coded_400(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A body that is not a JSON object (or not JSON, or not UTF-8): 400 with a client code."""
    stack = await gateway_stack(security=anonymous_security([READ]), login_at_start=False)
    caplog.set_level(logging.ERROR)
    response = await stack.client.post(
        "/graphql", content=BODIES[name], headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text[:200]
    assert "json" in response.headers["content-type"]
    assert set(codes(response.json())) <= CLIENT_CODES
    assert codes(response.json())
    assert dict(stack.pbx.stats.calls) == {}


BAD_BATCH_ITEMS = {
    "query-number": {"query": 5},
    "query-object": {"query": {"kind": "Document"}},
    "variables-number": {"query": "{ __typename }", "variables": 5},
}


@pytest.mark.parametrize("name", sorted(BAD_BATCH_ITEMS))
async def test_malformed_batch_item_is_checked_like_a_single_request(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Batching on, an operation whose query is not a string (or variables not an object)
    is refused as a client error, as it would be alone; never INTERNAL_ERROR or a log line."""
    stack = await gateway_stack(
        security=anonymous_security([READ], batching=True), login_at_start=False
    )
    caplog.set_level(logging.ERROR)
    item = BAD_BATCH_ITEMS[name]
    alone = await stack.client.post("/graphql", json=item)
    assert alone.status_code == 400
    response = await stack.client.post("/graphql", json=[item])
    assert response.status_code < 500
    body = response.json()
    answers = body if isinstance(body, list) else [body]
    found = [code for answer in answers for code in codes(answer)]
    assert found, body
    assert set(found) <= CLIENT_CODES | DOCUMENT_CODES, body
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert dict(stack.pbx.stats.calls) == {}


UNKNOWN_FRAGMENTS = {
    "in-selection": '{ conference(number: "6400") { ...Missing } }',
    "at-root": "{ ...Missing }",
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_FRAGMENTS))
async def test_malformed_unknown_fragment_is_a_validation_error(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A spread of a fragment that is not defined is GRAPHQL_VALIDATION_FAILED, not a
    limiter's KeyError; nothing is logged as a bug and the PBX is not asked."""
    stack = await gateway_stack(security=anonymous_security([READ]), login_at_start=False)
    caplog.set_level(logging.ERROR)
    body = await stack.graphql(UNKNOWN_FRAGMENTS[name])
    assert body.get("data") is None
    assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}, body
    assert any("Missing" in error["message"] for error in body["errors"])
    assert all(error["message"] != "'Missing'" for error in body["errors"])
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert dict(stack.pbx.stats.calls) == {}


EMPTY_SELECTIONS = {
    "root": "{ }",
    "field": '{ conference(number: "6400") { } }',
    "inline-fragment": '{ conference(number: "6400") { ... on Conference { } } }',
}


@pytest.mark.parametrize("name", sorted(EMPTY_SELECTIONS))
async def test_malformed_empty_selection_set_is_not_an_internal_error(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """An empty selection set (a syntax error in the spec, accepted by graphql-core 3.3)
    is answered as a document error or plainly, never as a crash of the depth limiter."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    caplog.set_level(logging.ERROR)
    body = await stack.graphql(EMPTY_SELECTIONS[name])
    assert set(codes(body)) <= DOCUMENT_CODES, body
    assert "max() arg" not in str(body)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
