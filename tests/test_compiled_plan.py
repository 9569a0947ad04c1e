"""Compiled plans answer exactly as strawberry does (gateway/schema/compiled_plan.py).

The differential test runs two real gateways on one simulated PBX and one fake clock:
``GATEWAY_COMPILED_PLANS`` on and off (strawberry, the reference). hypothesis writes the
documents (field subsets, aliases, inline fragments and named fragments, variables or
literals, numbers known, unknown, invalid, duplicated or null), picks the caller (read
only, read and PINs, no read scope) and moves the clock so rooms are served stale while
they are refreshed; every request goes to both gateways in the same order, and their
answers must be the same bytes (data, errors with paths, messages and codes, extensions).
The response cache is off there, so no answer comes from it; other tests count that a
compiled answer ran no strawberry execution, that each plan is compiled once, and that a
kept compiled answer is what the fast path then serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.graphql_view import GatewayGraphQL
from gateway.http.compiled_path import CompiledPath
from gateway.runtime import Runtime
from gateway.schema import GatewaySchema
from gateway.schema.compiled_plan import compile_plan
from gateway.security.identity import PINS, READ, WRITE
from gateway.serving import LoopbackServer
from gateway.simulator import SimulatorServer
from gateway.simulator.profiles import profile_config
from tests.security_helpers import api_key_security, write_keys
from tests.timing import FakeClock, eventually

FIELDS = (
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
)
KNOWN = [str(6400 + index) for index in range(12)]
NUMBERS = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN),
    st.sampled_from(["6499", "7000", "64000"]),  # rooms the PBX does not have
    st.sampled_from(["64a0", "", "6400,6401", "all", " 6400"]),  # not conference numbers
)
WALL = 1_800_000_000.0
"""time.time() for the stale marks' fetchedAt: both gateways answer in the same second."""


@dataclasses.dataclass
class Gateway:
    """One running gateway of the pair."""

    server: LoopbackServer
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.server.app.runtime
        return runtime

    @property
    def view(self) -> GatewayGraphQL:
        """The GraphQL view behind the security gate (white box: its counters)."""
        route = next(r for r in self.server.app.routes if getattr(r, "path", "") == "/graphql")
        view: GatewayGraphQL = route.app._app
        return view

    @property
    def compiled(self) -> CompiledPath:
        path = self.view._compiled
        assert path is not None
        return path

    async def post(self, body: dict[str, Any], key: str) -> httpx.Response:
        return await self.client.post("/graphql", json=body, headers={"X-API-Key": key})

    async def quiet(self) -> None:
        """Wait until no background refresh of the store is under way."""
        store = self.runtime.store
        await eventually(lambda: not store._tasks, what="the store's refreshes to end")


@dataclasses.dataclass
class Pair:
    """Compiled plans on (``compiled``) and off (``reference``), one PBX, one clock."""

    compiled: Gateway
    reference: Gateway
    clock: FakeClock
    keys: dict[str, str]

    async def both(self, body: dict[str, Any], key: str) -> tuple[httpx.Response, httpx.Response]:
        """``body`` sent to each gateway in turn, each left quiet before the next request."""
        ours = await self.compiled.post(body, self.keys[key])
        await self.compiled.quiet()
        theirs = await self.reference.post(body, self.keys[key])
        await self.reference.quiet()
        return ours, theirs


PairFactory = Callable[..., Any]


@pytest.fixture
async def pair_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PairFactory]:
    """Start the pair; ``profile`` picks the simulator's firmware, other keywords override
    both gateways' Settings."""
    monkeypatch.setattr("gateway.staleness.time.time", lambda: WALL)
    stored, keys = write_keys(
        tmp_path, {"reader": [READ], "operator": [READ, PINS], "writer": [WRITE]}
    )
    async with AsyncExitStack() as exits:

        async def start(profile: str = "s-series-v2", **overrides: Any) -> Pair:
            sim = await exits.enter_async_context(SimulatorServer(profile_config(profile)))
            clock = FakeClock()
            base = demo_settings(sim.base_url)
            overrides = {"response_cache_bytes": 0, **overrides}
            settings = dataclasses.replace(base, security=api_key_security(stored), **overrides)
            gateways = []
            for compiled in (True, False):
                app = create_app(
                    dataclasses.replace(settings, compiled_plans=compiled), clock=clock
                )
                server = await exits.enter_async_context(LoopbackServer(app))
                await server.app.runtime.session.started()
                client = await exits.enter_async_context(
                    httpx.AsyncClient(base_url=server.base_url, timeout=30)
                )
                gateways.append(Gateway(server, client))
            return Pair(gateways[0], gateways[1], clock, keys)

        yield start


# --- documents --------------------------------------------------------------------------


@st.composite
def room_selection(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A room's selection set (fields, aliases, an inline fragment or a named fragment),
    and the fragment definitions it needs."""
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5))
    parts = []
    for index, name in enumerate(fields):
        aliased = draw(st.booleans())
        parts.append(f"a{index}: {name}" if aliased else name)
    how = draw(st.sampled_from(["plain", "inline", "typed-inline", "fragment"]))
    fragments: list[str] = []
    if how == "inline":
        body = f"{parts[0]} ... {{ {' '.join(parts[1:]) or '__typename'} }}"
    elif how == "typed-inline":
        body = f"... on Conference {{ {' '.join(parts)} }} {parts[0]}"
    elif how == "fragment":
        name = f"F{draw(st.integers(0, 999))}"
        fragments.append(f"fragment {name} on Conference {{ {' '.join(parts)} }}")
        body = f"...{name} {parts[-1]}"
    else:
        body = " ".join(parts)
    return body, fragments


@st.composite
def operation(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A document and its variables."""
    roots: list[str] = []
    definitions: list[str] = []
    variables: dict[str, Any] = {}
    fragments: list[str] = []
    for index in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conferences", "conferences", "conference", "__typename"]))
        alias = f"r{index}: " if draw(st.booleans()) or index else ""
        if kind == "__typename":
            roots.append(f"{alias}__typename")
            continue
        selection, needed = draw(room_selection())
        fragments.extend(needed)
        if kind == "conferences":
            numbers = draw(st.lists(st.one_of(NUMBERS, st.none()), max_size=6))
            style = draw(st.sampled_from(["literal", "variable", "strict-variable", "string"]))
            if style == "literal":
                items = ", ".join("null" if n is None else f'"{n}"' for n in numbers)
                argument = f"[{items}]"
            elif style == "string":
                argument = f'"{draw(NUMBERS)}"'
            else:
                name = f"n{index}"
                kind_of = "[String]" if style == "variable" else "[String!]!"
                definitions.append(f"${name}: {kind_of}")
                given = draw(
                    st.one_of(
                        st.just(numbers),
                        st.just(numbers),
                        st.sampled_from(KNOWN),  # one string for a list
                        st.just(None),
                        st.just([1, "6400"]),  # does not coerce
                        st.just("absent"),
                    )
                )
                if given != "absent":
                    variables[name] = given
                argument = f"${name}"
            roots.append(f"{alias}conferences(numbers: {argument}) {{ {selection} }}")
        else:
            if draw(st.booleans()):
                argument = f'"{draw(NUMBERS)}"'
            else:
                name = f"m{index}"
                definitions.append(f"${name}: String!")
                variables[name] = draw(st.one_of(NUMBERS, st.just(6400), st.none()))
                argument = f"${name}"
            roots.append(f"{alias}conference(number: {argument}) {{ {selection} }}")
    head = (
        f"query Q({', '.join(definitions)})"
        if definitions
        else draw(st.sampled_from(["", "query", "query Named"]))
    )
    document = f"{head} {{ {' '.join(roots)} }} {' '.join(dict.fromkeys(fragments))}"
    return document, variables


def same(ours: httpx.Response, theirs: httpx.Response) -> None:
    """The same answer: body bytes, status, media type and caching headers."""
    assert ours.content == theirs.content
    assert ours.status_code == theirs.status_code
    for header in ("content-type", "cache-control"):
        assert ours.headers.get(header) == theirs.headers.get(header)


# --- the differential test ----------------------------------------------------------------


PAIRS: dict[PairFactory, Pair] = {}
"""The running pair of each differential test (started by its first example), by its
fixture (held here, so no later fixture can take its place)."""


@pytest.mark.parametrize("profile", ["s-series-v2", "field-worst"])
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    drawn=operation(),
    key=st.sampled_from(["reader", "operator", "operator", "writer"]),
    advance=st.sampled_from([0, 0, 31]),
    get=st.booleans(),
)
async def test_compiled_plan_answers_byte_for_byte_as_strawberry(
    pair_factory: PairFactory,
    profile: str,
    drawn: tuple[str, dict[str, Any]],
    key: str,
    advance: int,
    get: bool,
) -> None:
    """Generated documents, callers and clock moves: both gateways give the same bytes."""
    pair = PAIRS.get(pair_factory)
    if pair is None:
        pair = PAIRS[pair_factory] = await pair_factory(profile, max_numbers=8)
        same(*await pair.both({"query": "{ conferences { number } }"}, "operator"))
    document, variables = drawn
    body: dict[str, Any] = {"query": document}
    if variables or get:
        body["variables"] = variables
    same(*await pair.both(body, key))  # validates the document (and fetches rooms)
    pair.clock.advance(advance)  # 31 s: past the TTL, served stale while refreshed
    before = pair.compiled.compiled.answered
    ours, theirs = await pair.both(body, key)  # compiled, when a plan covers it
    if pair.compiled.compiled.answered > before:  # about a third of the examples
        event("compiled, stale" if b'"stale":' in ours.content else "compiled")
    same(ours, theirs)


# --- counts ----------------------------------------------------------------------------

ROOMS_BY_VARIABLE = (
    "query Rooms($numbers: [String]) { conferences(numbers: $numbers) { number name mute } }"
)


async def test_compiled_answer_runs_no_strawberry_execution_and_compiles_once(
    pair_factory: PairFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first request validates the document, ten reads with other numbers are
    answered by the plan: no strawberry execution, one compilation, no PBX call."""
    pair: Pair = await pair_factory()
    executions = 0
    execute = GatewaySchema.execute

    async def counted(self: GatewaySchema, *args: Any, **kwargs: Any) -> Any:
        nonlocal executions
        executions += 1
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(GatewaySchema, "execute", counted)
    gateway = pair.compiled
    await gateway.post({"query": "{ conferences { number } }"}, pair.keys["reader"])
    first = {"query": ROOMS_BY_VARIABLE, "variables": {"numbers": ["6400", "6499"]}}
    assert (await gateway.post(first, pair.keys["reader"])).status_code == 200
    assert executions == 2  # the listing, and the first request of the document
    calls = pair.compiled.runtime.store.stats.fetches  # 6499 is now known as no room
    documents = gateway.compiled._documents
    compiled_before = documents.compilations
    for index in range(10):
        body = {"query": ROOMS_BY_VARIABLE, "variables": {"numbers": [KNOWN[index], "6499"]}}
        answer = (await gateway.post(body, pair.keys["reader"])).json()
        assert [room["number"] for room in answer["data"]["conferences"]] == [KNOWN[index]]
    assert executions == 2
    assert gateway.compiled.answered == 10
    assert documents.compilations == compiled_before + 1
    assert pair.compiled.runtime.store.stats.fetches == calls


async def test_compiled_answers_fall_back_for_what_plans_do_not_cover(
    pair_factory: PairFactory,
) -> None:
    """session, @include, the listing, introspection, a mutation: strawberry answers."""
    pair: Pair = await pair_factory()
    gateway = pair.compiled
    await gateway.post({"query": "{ conferences { number } }"}, pair.keys["operator"])
    documents = [
        '{ conference(number: "6400") { number session { number } } }',
        '{ conference(number: "6400") { number name @include(if: true) } }',
        "{ conferences { number } }",
        '{ __schema { queryType { name } } conference(number: "6400") { number } }',
    ]
    for document in documents:
        for _ in range(2):
            await gateway.post({"query": document}, pair.keys["operator"])
    assert gateway.compiled.answered == 0


async def test_compiled_answer_is_kept_for_the_fast_path_at_its_second_sight(
    pair_factory: PairFactory,
) -> None:
    """A clean compiled answer goes into the response cache the second time its key is
    seen; the same request then gets the same bytes from it (no plan run), and the
    reference gives them too. Reads asked once (numbers drawn anew) never enter it."""
    pair: Pair = await pair_factory(response_cache_bytes=1 << 20)
    await pair.both({"query": "{ conferences { number } }"}, "reader")
    body = {"query": ROOMS_BY_VARIABLE, "variables": {"numbers": ["6401", "6402"]}}
    await pair.both({**body, "variables": {"numbers": ["6400"]}}, "reader")  # validates it
    answers, reader = pair.compiled.runtime.metrics.registry, pair.keys["reader"]
    entries = answers.get_sample_value("gateway_response_cache_entries")
    assert entries is not None
    for one, other in zip(KNOWN[:10], KNOWN[2:], strict=False):  # ten reads, each asked once
        await pair.compiled.post({**body, "variables": {"numbers": [one, other]}}, reader)
    assert pair.compiled.compiled.answered == 10
    assert answers.get_sample_value("gateway_response_cache_entries") == entries

    first, reference = await pair.both(body, "reader")
    same(first, reference)
    assert pair.compiled.compiled.answered == 11
    second = await pair.compiled.post(body, reader)
    assert pair.compiled.compiled.answered == 12  # run again, and kept this time
    again = await pair.compiled.post(body, reader)
    assert again.content == second.content == first.content
    assert pair.compiled.compiled.answered == 12  # the fast path answered
    assert answers.get_sample_value("gateway_response_cache_entries") == entries + 1


def test_compile_plan_leaves_out_mutations_and_unnamed_choices() -> None:
    """No plan for a mutation, or for a document of two operations without a name."""
    from graphql import parse

    assert compile_plan(parse('mutation { x(number: "1") { number } }'), None) is None
    two = parse('query A { __typename } query B { conference(number: "6400") { name } }')
    assert compile_plan(two, None) is None
    plan = compile_plan(two, "B")
    assert plan is not None
    assert plan.operation_name == "B"


async def test_compiled_answer_over_get_carries_the_same_caching_headers(
    pair_factory: PairFactory,
) -> None:
    """A GET read answered by a plan: the same body, Cache-Control and Vary as strawberry's,
    and an ETag; a stale one is no-store on both."""
    pair: Pair = await pair_factory()
    await pair.both({"query": "{ conferences { number } }"}, "reader")
    params = {
        "query": ROOMS_BY_VARIABLE,
        "variables": '{"numbers": ["6400", "6401"]}',
    }
    answers = []
    for advance in (0, 0, 31):
        pair.clock.advance(advance)
        for gateway in (pair.compiled, pair.reference):
            response = await gateway.client.get(
                "/graphql", params=params, headers={"X-API-Key": pair.keys["reader"]}
            )
            await gateway.quiet()
            answers.append(response)
    fresh, fresh_reference, again, again_reference, stale, stale_reference = answers
    for ours, theirs in (
        (fresh, fresh_reference),
        (again, again_reference),
        (stale, stale_reference),
    ):
        same(ours, theirs)
        assert ours.headers.get("vary") == theirs.headers.get("vary")
        assert ("etag" in ours.headers) == ("etag" in theirs.headers)
    assert "max-age=" in again.headers["cache-control"] and "etag" in again.headers
    assert b'"stale":' in stale.content and stale.headers["cache-control"] == "no-store"
    assert pair.compiled.compiled.answered == 2  # the first validated the document
