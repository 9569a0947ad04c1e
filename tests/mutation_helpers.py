"""Shared pieces of the ``updateConference`` tests: the documents, the call, the scopes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from gateway.security.config import SecuritySettings
from gateway.security.identity import ALL_SCOPES
from tests.gateway_stack import Stack

UPDATE: Final = """mutation Update($input: UpdateConferenceInput!) {
  updateConference(input: $input) {
    changedFields
    conference {
      number name participantPassword moderatorPassword hasParticipantPassword
      hasModeratorPassword waitForModerator allowInvite moderators musicOnHold mute prompt
    }
  }
}"""

UPDATE_NO_PINS: Final = """mutation Update($input: UpdateConferenceInput!) {
  updateConference(input: $input) { changedFields conference { number name } }
}"""

ROOM: Final = "query Room($n: String!) { conference(number: $n) { number name } }"


async def update(stack: Stack, document: str = UPDATE, /, **fields: Any) -> dict[str, Any]:
    """Run ``updateConference`` with ``fields`` as the input (schema names)."""
    return await stack.graphql(document, {"input": fields})


async def room_name(stack: Stack, number: str) -> str | None:
    """The room's name as the gateway answers a query."""
    result = await stack.graphql(ROOM, {"n": number})
    assert "errors" not in result, result
    conference = result["data"]["conference"]
    return None if conference is None else str(conference["name"])


def on_pbx(stack: Stack, number: str) -> dict[str, str]:
    """The room as the simulated PBX holds it (wire strings)."""
    room = stack.pbx.book.get(number)
    assert room is not None
    return dict(room)


def scopes(granted: Iterable[str]) -> SecuritySettings:
    """``GATEWAY_AUTH=none`` giving everyone ``granted``, without rate limits."""
    return SecuritySettings(
        auth="none",
        anonymous_scopes=frozenset(granted),
        rate=1e6,
        burst=1e6,
        miss_rate=1e6,
        miss_burst=1e6,
    )


EVERY_SCOPE: Final = ALL_SCOPES


def error_of(result: dict[str, Any]) -> dict[str, Any]:
    """The one error of ``result`` (asserting there is exactly one)."""
    errors = result.get("errors") or []
    assert len(errors) == 1, result
    error: dict[str, Any] = errors[0]
    return error
