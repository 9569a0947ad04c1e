"""Hostile GraphQL documents (issue 15): each refused cheaply while the gateway keeps answering.

Every attack runs against the real gateway on a loopback uvicorn server, in the same
event loop as a probe that keeps asking for ``/healthz`` and a hot (response-cached)
query. A document that held the loop would hold the probe too, so the probe's answers,
counted and each within a bound generous enough for a shared machine, show the loop was
free; the attack itself must get its coded error and cost the PBX nothing.

Before the document budget, these documents took seconds to minutes of CPU on the loop
(fragment fan-out of 60 levels never finished); the figures are in the README.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from gateway.schema import build_schema
from gateway.schema.document_cache import DocumentCacheFactory
from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import anonymous_security, codes

TOO_LARGE = "OPERATION_TOO_LARGE"
HOT = "{ conferences { number name } }"
PROBE_ROUNDS = 5
"""Probe rounds (a /healthz and a hot query each) that must answer during an attack."""
PROBE_BOUND = 1.0
"""Seconds any one probe round may take: generous, as the machine is shared."""


def fan_out(levels: int) -> str:
    """``F0`` spreads ``F1`` twice, ``F1`` spreads ``F2`` twice...: 2**levels expansions."""
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    parts.append(f"fragment F{levels} on Query {{ conferences {{ number }} }}")
    return " ".join(parts)


def wide(copies: int, comment: str = "") -> str:
    """``conferences { number name }`` ``copies`` times in one selection set."""
    return "{ " + comment + " conferences { number name }" * copies + " }"


@dataclasses.dataclass
class Probe:
    """What the probe saw: seconds per round, and any answer that was not right."""

    rounds: list[float] = dataclasses.field(default_factory=list)
    wrong: list[str] = dataclasses.field(default_factory=list)


async def under_attack(stack: Stack, attack: Awaitable[Any]) -> tuple[Any, Probe]:
    """Run ``attack`` while probing; the probe goes on until the attack is over and it has
    answered PROBE_ROUNDS times (bounded: it gives up after 200 rounds)."""
    probe = Probe()
    hot = await stack.graphql(HOT)  # warm: from here on the response cache answers
    assert "errors" not in hot
    task = asyncio.ensure_future(attack)
    while len(probe.rounds) < 200 and not (task.done() and len(probe.rounds) >= PROBE_ROUNDS):
        started = time.perf_counter()
        health = await stack.client.get("/healthz")
        answer = await stack.graphql(HOT)
        probe.rounds.append(time.perf_counter() - started)
        if health.status_code != 200 or answer != hot:
            probe.wrong.append(f"{health.status_code} {answer}")
        await asyncio.sleep(0.01)
    return await task, probe


def assert_probe_answered(probe: Probe) -> None:
    assert probe.wrong == []
    assert len(probe.rounds) >= PROBE_ROUNDS
    assert max(probe.rounds) < PROBE_BOUND, probe.rounds


async def attack_stack(gateway_stack: StackFactory, **security: Any) -> Stack:
    """Anonymous readers with unlimited rates (the attack must reach the GraphQL layer)."""
    return await gateway_stack(security=anonymous_security([READ], **security))


async def send_all(stack: Stack, documents: list[str]) -> list[dict[str, Any]]:
    """POST every document at once."""
    return list(await asyncio.gather(*(stack.graphql(document) for document in documents)))


@pytest.mark.parametrize("levels", [16, 22, 60], ids=["16-levels", "917-bytes", "2.4-KB"])
async def test_fragment_fan_out_is_refused_while_the_probe_answers(
    gateway_stack: StackFactory, levels: int
) -> None:
    """Fragment fan-out (2**levels expansions; 60 levels is the 2.4 KB body that pinned the
    process) is OPERATION_TOO_LARGE, five variants at once, with no PBX call."""
    stack = await attack_stack(gateway_stack)
    documents = [f"# variant {i}\n{fan_out(levels)}" for i in range(5)]
    answers, probe = await under_attack(stack, send_all(stack, documents))
    for answer in answers:
        assert answer.get("data") is None
        assert TOO_LARGE in codes(answer)
    assert "GATEWAY_MAX_FRAGMENT_SPREADS" in str(answers[0])
    assert_probe_answered(probe)
    assert stack.calls() == 1  # the probe's warm-up only


async def test_wide_duplicate_fields_are_refused_while_the_probe_answers(
    gateway_stack: StackFactory,
) -> None:
    """350 copies of `conferences { number name }` in 20 comment variants at once (the
    burst that stalled /healthz 15 s): each OPERATION_TOO_LARGE, never validated."""
    stack = await attack_stack(gateway_stack)
    documents = [wide(350, f"# variant {i}\n") for i in range(20)]
    answers, probe = await under_attack(stack, send_all(stack, documents))
    for answer in answers:
        assert answer.get("data") is None
        assert codes(answer) == [TOO_LARGE]
        assert "GATEWAY_MAX_SELECTIONS" in answer["errors"][0]["message"]
    assert_probe_answered(probe)
    assert stack.calls() == 1


async def test_budget_refusal_runs_no_validation_rule(gateway_stack: StackFactory) -> None:
    """A document over the budget that is also invalid (an unknown field) gets only the
    budget's error: graphql-core's rules never saw it."""
    stack = await attack_stack(gateway_stack)
    answer = await stack.graphql(wide(350).replace("name", "noSuchField", 1))
    assert codes(answer) == [TOO_LARGE]
    assert stack.calls() == 0


async def test_wide_document_at_the_budget_is_answered_while_the_probe_answers(
    gateway_stack: StackFactory,
) -> None:
    """The widest document the default budget admits (100 copies: 300 fields) is
    answered, 20 distinct variants at once, validated off the loop."""
    stack = await attack_stack(gateway_stack)
    documents = [
        "{ a" + str(i) + ": conferences { number }" + " conferences { number name }" * 99 + " }"
        for i in range(20)
    ]
    answers, probe = await under_attack(stack, send_all(stack, documents))
    for answer in answers:
        assert "errors" not in answer
        assert answer["data"]["conferences"]
    assert_probe_answered(probe)


async def test_comment_variants_of_a_document_are_validated_once() -> None:
    """Comment and whitespace variants of one document share its cache entry: 20 variants,
    one validation (a comment no longer defeats the document cache)."""
    schema = build_schema()
    factory = next(e for e in schema.extensions if isinstance(e, DocumentCacheFactory))
    for i in range(20):
        result = await schema.execute(
            f"# variant {i}\n{{ __typename{' ' * i} __typename }}", context_value=None
        )
        assert result.errors is None
    assert factory.documents.validations == 1


async def test_batch_is_charged_the_sum_of_its_operations(gateway_stack: StackFactory) -> None:
    """With batching on, six documents each within the budget (300 fields each) share
    one request's budget: one is answered, five are OPERATION_TOO_LARGE; the probe answers."""
    stack = await attack_stack(gateway_stack, batching=True)
    batch = [{"query": wide(100, f"# operation {i}\n")} for i in range(6)]

    async def attack() -> list[dict[str, Any]]:
        response = await stack.client.post("/graphql", json=batch)
        results: list[dict[str, Any]] = response.json()
        return results

    results, probe = await under_attack(stack, attack())
    assert len(results) == 6
    assert sum(1 for result in results if result.get("data")) == 1
    refused = [result for result in results if not result.get("data")]
    assert all(codes(result) == [TOO_LARGE] for result in refused)
    assert "per request" in refused[0]["errors"][0]["message"]
    assert_probe_answered(probe)


@pytest.mark.parametrize(
    "document",
    [
        "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        "query { ...A } fragment A on Query { conferences { number } ...A }",
        "query { conferences { ...C } } fragment C on Conference { ...D number }"
        " fragment D on Conference { name ...C }",
    ],
    ids=["two", "self", "nested"],
)
async def test_fragment_cycle_is_refused_while_the_probe_answers(
    gateway_stack: StackFactory, document: str
) -> None:
    """A fragment spreading itself (directly or through others) is refused as invalid, by
    the cost pass, with no PBX call."""
    stack = await attack_stack(gateway_stack)
    answers, probe = await under_attack(stack, send_all(stack, [document] * 5))
    for answer in answers:
        assert answer.get("data") is None
        assert codes(answer) == ["GRAPHQL_VALIDATION_FAILED"]
        assert "within itself" in answer["errors"][0]["message"]
    assert_probe_answered(probe)
    assert stack.calls() == 1


async def test_unparseable_documents_are_refused_while_the_probe_answers(
    gateway_stack: StackFactory,
) -> None:
    """20 documents of about 2,000 tokens that fail to parse at their very end, at once: each
    GRAPHQL_PARSE_FAILED with the parser's location (parsed once, in the worker), and the
    probe answers."""
    stack = await attack_stack(gateway_stack)
    documents = [f"# variant {i}\n" + wide(390) + " }" for i in range(20)]
    answers, probe = await under_attack(stack, send_all(stack, documents))
    for answer in answers:
        assert codes(answer) == ["GRAPHQL_PARSE_FAILED"]
        assert answer["errors"][0]["message"].startswith("Syntax Error")
        assert answer["errors"][0]["locations"][0]["line"] == 2
    assert_probe_answered(probe)


async def test_unparseable_document_with_an_operation_name_is_a_parse_error(
    gateway_stack: StackFactory,
) -> None:
    """An operationName beside a text that does not parse still gets GRAPHQL_PARSE_FAILED
    (not an operation-resolution error), over POST and GET."""
    stack = await attack_stack(gateway_stack)
    body = {"query": "query Rooms { conferences {", "operationName": "Rooms"}
    posted = await stack.client.post("/graphql", json=body)
    got = await stack.client.get("/graphql", params=body)
    for response in (posted, got):
        assert codes(response.json()) == ["GRAPHQL_PARSE_FAILED"]
