"""Metrics and logs after a scripted session: they move as they should, and say nothing secret."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.logs import (
    JsonFormatter,
    QueuedLineHandler,
    configure_logging,
    direct_writer,
)
from gateway.observability.metrics import MAX_OPERATION_NAMES, Metrics
from gateway.secrets import RedactingFilter
from gateway.simulator import DEMO_PASSWORD, password_digest
from gateway.simulator.tokens import TokenStore
from tests.gateway_stack import Stack, StackFactory


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample in a Prometheus exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await stack.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record, formatted as serve formats it (JSON, redacted), into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_metrics_move_with_a_scripted_session(gateway_stack: StackFactory) -> None:
    """Requests, PBX calls, logins, cache lookups and the breaker state all show up."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql('query Wall { conference(number: "6400") { name } }')
    await stack.graphql('query Wall { conference(number: "6400") { name } }')
    await stack.graphql('query Bad { conference(number: "all") { name } }')
    found = await scrape(stack)
    ok = ("gateway_graphql_requests_total", (("operation", "Wall"), ("outcome", "ok")))
    bad = ("gateway_graphql_requests_total", (("operation", "Bad"), ("outcome", "error")))
    assert found[ok] == 2
    assert found[bad] == 1
    assert found[("gateway_graphql_errors_total", (("code", "BAD_USER_INPUT"),))] == 1
    query_ok = (("endpoint", "conference/query"), ("errno", ""), ("outcome", "success"))
    assert found[("gateway_pbx_calls_total", query_ok)] == stack.calls() == 1
    assert found[("gateway_pbx_logins_total", (("result", "success"),))] == 1
    # The repeat is answered whole from the response cache: the store is not even asked.
    assert found[("gateway_response_cache_hits_total", ())] == 1
    assert found[("gateway_cache_lookups_total", (("result", "hit"),))] == 0
    assert found[("gateway_cache_lookups_total", (("result", "miss"),))] == 1
    assert found[("gateway_circuit_state", (("state", "closed"),))] == 1
    assert found[("gateway_pbx_session_up", ())] == 1


async def test_metrics_count_failures_errnos_and_stale_serves(gateway_stack: StackFactory) -> None:
    """A PBX errno and a stale serve are counted under bounded labels."""
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0, pbx_breaker_threshold=100)
    await stack.graphql('{ conference(number: "6400") { name } }')
    stack.clock.advance(31)
    stack.pbx.fail_next(-1, "30003", "conference/query")
    result = await stack.graphql('{ conference(number: "6400") { name } }')
    assert result["extensions"]["stale"]["code"] == "PBX_UNAVAILABLE"
    found = await scrape(stack)
    failed = (("endpoint", "conference/query"), ("errno", "30003"), ("outcome", "unavailable"))
    assert found[("gateway_pbx_calls_total", failed)] >= 1
    assert found[("gateway_cache_lookups_total", (("result", "stale"),))] == 1
    stale = ("gateway_graphql_requests_total", (("operation", "anonymous"), ("outcome", "stale")))
    assert found[stale] == 1


async def test_metrics_never_label_room_numbers_or_clients(gateway_stack: StackFactory) -> None:
    """No room number or client address appears anywhere in /metrics."""
    stack = await gateway_stack()
    await stack.graphql('{ conferences(numbers: ["6400", "6403", "98765"]) { name } }')
    text = (await stack.client.get("/metrics")).text
    for leak in ("6403", "98765", "127.0.0.1", "anonymous@"):
        assert leak not in text


def test_metrics_operation_names_are_bounded() -> None:
    """Client-chosen operation names: sanitised, and capped with the rest as `other`."""
    metrics = Metrics()
    labels = {metrics.operation_label(f"Op{i}") for i in range(MAX_OPERATION_NAMES + 50)}
    assert len(labels) == MAX_OPERATION_NAMES + 1
    assert "other" in labels
    assert metrics.operation_label("a b; drop") == "other"
    assert metrics.operation_label(None) == "anonymous"


@pytest.fixture
def shipped_log() -> Iterator[io.StringIO]:
    """Every log record as ``serve`` writes it: ``configure_logging`` (the request line
    formatted without a LogRecord, the writer thread, batch redaction) into a buffer."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("DEBUG", stream=buffer)
    ours = root.handlers[0]
    try:
        yield buffer
    finally:
        ours.close()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize("sink", ["json_log", "shipped_log"])
async def test_request_log_is_json_with_the_fields_and_no_secret(
    gateway_stack: StackFactory,
    sink: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One JSON line per request with id, operation, timing, PBX fetches, cache and client;
    and no token, password or MD5 in any line, through logins and token renewals (through
    ``logging`` with a plain handler, and as ``serve`` writes it)."""
    json_log: io.StringIO = request.getfixturevalue(sink)
    if sink == "shipped_log":  # pytest adds its capture handlers per phase: keep serve's alone
        root = logging.getLogger()
        root.handlers[:] = [h for h in root.handlers if isinstance(h, QueuedLineHandler)]
        assert direct_writer(logging.getLogger("gateway.request")) is not None
    issued: list[str] = []
    original_issue = TokenStore.issue

    def recording_issue(self: TokenStore, username: str, now: float) -> str:
        token = original_issue(self, username, now)
        issued.append(token)
        return token

    monkeypatch.setattr(TokenStore, "issue", recording_issue)
    stack = await gateway_stack(cache_ttl=30, revalidate_window=0)
    await stack.graphql('query Wall { conference(number: "6401") { name participantPassword } }')
    stack.pbx.expire_tokens()
    stack.clock.advance(31)
    await stack.graphql('query Wall { conference(number: "6401") { name } }')
    await stack.graphql('query Bad { conference(number: "x") { name } }')
    for handler in logging.getLogger().handlers:
        handler.flush()  # the shipped writer's thread: every queued line written
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    requests = [line for line in lines if line["logger"] == "gateway.request"]
    assert [r["outcome"] for r in requests] == ["ok", "ok", "error"]
    first = requests[0]
    assert re.fullmatch(r"[0-9a-f]{16}", first["request_id"])
    assert (first["operation"], first["pbx_fetches"], first["cache"]) == ("Wall", 1, "miss")
    assert first["client"] == "anonymous@127.0.0.1"
    assert requests[2]["error_codes"] == ["BAD_USER_INPUT"]
    text = json_log.getvalue()
    assert len(issued) == 2  # the start-up login and the renewal
    for secret in [DEMO_PASSWORD, password_digest(DEMO_PASSWORD), "3201", *issued]:
        assert secret not in text
    assert "token=<redacted>" in text  # httpx's own request line was scrubbed, not dropped
