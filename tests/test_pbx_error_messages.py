"""What a GraphQL client reads about a PBX failure: the code and what happened, never the
PBX's address or the operator's hints, which the log carries instead."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import pytest

from tests.gateway_stack import Stack, StackFactory

QUERY = '{ conference(number: "6400") { name } }'


def _address_parts(stack: Stack) -> list[str]:
    parts = urlsplit(stack.sim.base_url)
    assert parts.hostname is not None and parts.port is not None
    return [stack.sim.base_url, f"{parts.hostname}:{parts.port}", str(parts.port)]


def _assert_hidden(stack: Stack, text: str) -> None:
    for part in _address_parts(stack):
        assert part not in text
    assert not re.search(r"https?://", text)
    assert "PBX_URL" not in text and "PBX_TIMEOUT" not in text and "PBX_VERIFY_TLS" not in text


async def test_unreachable_pbx_message_names_no_address(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PBX_UNAVAILABLE (connection refused): no URL, host or port for the client; the log
    line has the PBX's address and what to check."""
    stack = await gateway_stack(pbx_breaker_threshold=100)
    stack.pbx.go_down(30)
    with caplog.at_level(logging.WARNING, logger="gateway.pbx.client"):
        result = await stack.graphql(QUERY)
    error = result["errors"][0]
    assert error["extensions"]["code"] == "PBX_UNAVAILABLE"
    assert "could not reach the PBX" in error["message"]
    _assert_hidden(stack, str(result))
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.pbx.client"]
    assert any(stack.sim.base_url in line and "PBX_URL" in line for line in logged)


async def test_garbage_answer_message_names_no_address(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PBX_UNAVAILABLE (an HTML page instead of JSON): the hint about the API address is logged."""
    stack = await gateway_stack(pbx_breaker_threshold=100)
    stack.pbx.garbage_next(2, "html", endpoint="conference/query")
    with caplog.at_level(logging.WARNING, logger="gateway.pbx.client"):
        result = await stack.graphql(QUERY)
    assert result["errors"][0]["extensions"]["code"] == "PBX_UNAVAILABLE"
    _assert_hidden(stack, str(result))
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.pbx.client"]
    assert any(stack.sim.base_url in line and "is PBX_URL" in line for line in logged)


async def test_refused_call_message_names_no_address(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PBX_ERROR (an errno): the client reads the errno's meaning, the log the PBX's address."""
    stack = await gateway_stack()
    stack.pbx.fail_next(2, "10039", endpoint="conference/query")
    with caplog.at_level(logging.INFO, logger="gateway.pbx.client"):
        result = await stack.graphql(QUERY)
    error = result["errors"][0]
    assert (error["extensions"]["code"], error["extensions"]["errno"]) == ("PBX_ERROR", "10039")
    _assert_hidden(stack, str(result))
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.pbx.client"]
    assert any(stack.sim.base_url in line and "10039" in line for line in logged)
