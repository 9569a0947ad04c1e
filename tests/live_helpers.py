"""Helpers for live-data tests: read the simulator's rooms as a source would, read updates
with a bound, and run ``conferenceSessions`` in-process against a running gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from gateway.conference_codec import ALL
from gateway.pbx.sessions_query import LiveSession, query_in_session
from gateway.runtime import Runtime
from gateway.schema import build_schema
from gateway.schema.context import GatewayContext
from gateway.schema.numbers import NumberBudget
from gateway.security.identity import READ, Identity

T = TypeVar("T")
IN_SESSION = "conference/query_in_session"
READ_BOUND = 10.0  # seconds: only a hang reaches it

SESSIONS = """
subscription Watch($numbers: [String]) {
  conferenceSessions(numbers: $numbers) {
    number reason session { participants { id kind number status } }
  }
}
"""


async def next_of(iterator: AsyncIterator[T]) -> T:
    """The next item, failing the test if none comes within READ_BOUND seconds."""
    return await asyncio.wait_for(anext(iterator), READ_BOUND)


async def listing(runtime: Runtime) -> dict[str, LiveSession]:
    """Who is in which room on the PBX now, read as a source would (one PBX call)."""
    return await query_in_session(runtime.session, ALL)


def context_for(runtime: Runtime, scopes: frozenset[str] = frozenset({READ})) -> GatewayContext:
    """A request's context over the running gateway's runtime, as the view builds it."""
    return GatewayContext(
        store=runtime.store,
        live=runtime.live,
        feed=runtime.feed,
        numbers=NumberBudget(runtime.settings.max_numbers),
        identity=Identity(name="tester", scopes=scopes, kind="api-key"),
        session=runtime.session,
        misses=runtime.misses,
        deadline=runtime.clock() + runtime.settings.request_deadline,
    )


async def subscribe(
    runtime: Runtime,
    numbers: list[str | None] | None = None,
    *,
    scopes: frozenset[str] = frozenset({READ}),
    document: str = SESSIONS,
    context: GatewayContext | None = None,
    variables: dict[str, Any] | None = None,
) -> AsyncIterator[Any]:
    """``conferenceSessions(numbers)`` executed in-process (with ``context``, else a fresh
    one holding ``scopes``; ``variables`` instead of ``numbers`` for another document):
    an iterator of results."""
    settings = runtime.settings
    schema = build_schema(settings.security, share_live_updates=settings.live_share_updates)
    if variables is None:
        variables = {} if numbers is None else {"numbers": numbers}
    results = await schema.subscribe(
        document,
        variable_values=variables,
        context_value=context if context is not None else context_for(runtime, scopes),
    )
    assert not isinstance(results, dict)
    iterator: AsyncIterator[Any] = results
    return iterator
