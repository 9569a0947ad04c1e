"""Error masking: a bug answers INTERNAL_ERROR with a request id; the detail stays in the log.

Client mistakes (bad variables) are answered with their own code and are not logged as
bugs, so the log's unexpected errors are all real ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import anonymous_security, codes

SECRET_DETAIL = "secret detail /etc/passwd"


async def broken_stack(gateway_stack: StackFactory, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A running gateway whose store raises an unexpected exception on every lookup."""
    stack = await gateway_stack(security=anonymous_security([READ]))

    async def explode(numbers: Sequence[str], **kwargs: Any) -> list[object]:
        raise RuntimeError(SECRET_DETAIL)

    monkeypatch.setattr(stack.gateway_runtime().store, "get_many", explode)
    return stack


def unexpected_error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_masking_unexpected_exception_is_internal_error_with_request_id(
    gateway_stack: StackFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resolver's RuntimeError reaches the client as INTERNAL_ERROR naming a request id,
    without its message, path or traceback; the log has all three under that id."""
    stack = await broken_stack(gateway_stack, monkeypatch)
    caplog.set_level(logging.DEBUG)
    response = await stack.client.post(
        "/graphql", json={"query": '{ conference(number: "6400") { number } }'}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"conference": None}
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INTERNAL_ERROR"
    request_id = error["extensions"]["requestId"]
    assert len(request_id) >= 8
    assert request_id in error["message"]
    for leak in ("secret detail", "/etc/passwd", "Traceback", "RuntimeError", "store.py"):
        assert leak not in response.text
    (record,) = unexpected_error_records(caplog)
    assert request_id in record.getMessage()
    assert record.exc_info is not None
    assert SECRET_DETAIL in caplog.text
    assert "Traceback" in caplog.text


async def test_masking_request_ids_differ_per_request(
    gateway_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request gets its own id, so an operator finds the one log entry quoted."""
    stack = await broken_stack(gateway_stack, monkeypatch)
    ids = set()
    for _ in range(3):
        body = await stack.graphql('{ conference(number: "6400") { number } }')
        ids.add(body["errors"][0]["extensions"]["requestId"])
    assert len(ids) == 3


async def test_masking_every_failed_field_is_masked(
    gateway_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several fields failing in one request are each masked; none carries the detail."""
    stack = await broken_stack(gateway_stack, monkeypatch)
    body = await stack.graphql(
        '{ a: conference(number: "6400") { number } b: conferences(numbers: ["6401"]) { number } }'
    )
    assert codes(body) == ["INTERNAL_ERROR", "INTERNAL_ERROR"]
    assert SECRET_DETAIL not in str(body)


@pytest.mark.parametrize(
    "value", [5, 6400.5, True, ["6400"], {"n": "6400"}], ids=["int", "float", "bool", "list", "obj"]
)
async def test_masking_wrong_variable_type_is_bad_input_not_a_bug(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture, value: object
) -> None:
    """A variable of the wrong type is the client's mistake: BAD_USER_INPUT, nothing
    logged as an unexpected error, no PBX call."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    caplog.set_level(logging.DEBUG)
    body = await stack.graphql(
        "query($n: String!) { conference(number: $n) { number } }", {"n": value}
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "Variable '$n'" in body["errors"][0]["message"]
    assert unexpected_error_records(caplog) == []
    assert stack.calls() == 0


async def test_masking_missing_required_variable_is_bad_input(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A required variable left out is BAD_USER_INPUT, not an internal error."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    caplog.set_level(logging.DEBUG)
    body = await stack.graphql("query($n: String!) { conference(number: $n) { number } }", {})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert unexpected_error_records(caplog) == []
