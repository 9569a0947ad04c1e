"""When the PBX refuses or loses a change: coded errors, never an automatic resend, and a
cache that is dropped exactly when the room may have changed."""

from __future__ import annotations

import pytest

from tests.gateway_stack import StackFactory
from tests.mutation_helpers import UPDATE_NO_PINS, error_of, on_pbx, room_name, update


@pytest.mark.parametrize(
    ("errno", "code"),
    [("10025", "PBX_RATE_LIMITED"), ("10004", "PBX_ERROR"), ("30003", "PBX_UNAVAILABLE")],
)
async def test_mutation_pbx_refusal_arrives_coded_and_is_not_resent(
    gateway_stack: StackFactory, errno: str, code: str
) -> None:
    """A Failed answer is one coded error with its errno; the PBX saw one update; the room
    and the gateway's cached copy are unchanged, so the next query costs nothing."""
    stack = await gateway_stack()
    assert await room_name(stack, "6400") == "Sales"
    stack.pbx.fail_next(1, errno, "conference/update")
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Refused")
    assert result["data"] is None
    error = error_of(result)
    assert error["extensions"]["code"] == code
    assert error["extensions"]["errno"] == errno
    assert error["path"] == ["updateConference"]
    assert stack.calls("conference/update") == 1
    assert on_pbx(stack, "6400")["name"] == "Sales"
    assert await room_name(stack, "6400") == "Sales"
    assert stack.calls("conference/query") == 1


async def test_mutation_applied_too_often_says_when_to_retry(gateway_stack: StackFactory) -> None:
    """Errno 10025 carries retryAfter (and a Retry-After header); sending again after it
    succeeds."""
    stack = await gateway_stack()
    stack.pbx.fail_next(1, "10025", "conference/update")
    body = {"query": UPDATE_NO_PINS, "variables": {"input": {"number": "6400", "name": "Later"}}}
    response = await stack.client.post("/graphql", json=body)
    error = error_of(response.json())
    assert error["extensions"] == {"code": "PBX_RATE_LIMITED", "errno": "10025", "retryAfter": 10}
    assert "nothing was changed" in error["message"]
    assert response.headers["retry-after"] == "10"
    again = await update(stack, UPDATE_NO_PINS, number="6400", name="Later")
    assert again["data"]["updateConference"]["conference"]["name"] == "Later"


async def test_mutation_dropped_connection_is_an_error_and_never_resent(
    gateway_stack: StackFactory,
) -> None:
    """The answer to conference/update is lost: PBX_UNAVAILABLE saying the outcome is
    unknown, exactly one update reached the PBX, and the cached room is dropped so the
    next query asks the PBX (queries, unlike changes, are retried after a drop)."""
    stack = await gateway_stack()
    await room_name(stack, "6400")
    stack.pbx.drop_next(1, "conference/update")
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Maybe")
    error = error_of(result)
    assert error["extensions"]["code"] == "PBX_UNAVAILABLE"
    assert "conference/update" in error["message"]
    assert stack.calls("conference/update") == 1
    assert await room_name(stack, "6400") == "Sales"  # the simulator dropped before applying
    assert stack.calls("conference/query") == 2


async def test_mutation_garbage_answer_is_unknown_outcome_not_resent(
    gateway_stack: StackFactory,
) -> None:
    """An unreadable answer is treated like a lost one: one call, an error, cache dropped."""
    stack = await gateway_stack()
    await room_name(stack, "6400")
    stack.pbx.garbage_next(1, "truncated", "conference/update")
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Garbled")
    assert error_of(result)["extensions"]["code"] == "PBX_UNAVAILABLE"
    assert stack.calls("conference/update") == 1
    await room_name(stack, "6400")
    assert stack.calls("conference/query") == 2


async def test_mutation_after_token_expiry_logs_in_and_applies_once(
    gateway_stack: StackFactory,
) -> None:
    """A token error means the PBX did not look at the change: the session logs in again
    and sends it once more, and the room is changed once."""
    stack = await gateway_stack()
    stack.pbx.expire_tokens()
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="After login")
    assert result["data"]["updateConference"]["conference"]["name"] == "After login"
    assert stack.calls("conference/update") == 2  # the refused one, then the real one
    assert stack.pbx.stats.logins_succeeded == 2
    assert on_pbx(stack, "6400")["name"] == "After login"


async def test_mutation_unknown_room_is_a_pbx_error_naming_the_room(
    gateway_stack: StackFactory,
) -> None:
    """A room the PBX does not have: its errno, and a message that names the number."""
    stack = await gateway_stack()
    result = await update(stack, UPDATE_NO_PINS, number="9999", name="Ghost")
    error = error_of(result)
    assert error["extensions"]["code"] == "PBX_ERROR"
    assert error["extensions"]["errno"] == "10004"
    assert "9999" in error["message"]
    assert stack.calls("conference/update") == 1


async def test_mutation_failed_read_back_keeps_the_applied_change(
    gateway_stack: StackFactory,
) -> None:
    """The change is applied but the read-back fails: changedFields is answered and the
    error sits on `conference` alone; the next query (PBX well again) shows the change."""
    stack = await gateway_stack()
    stack.pbx.fail_next(1, "30003", "conference/query")
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Applied")
    assert result["data"] == {"updateConference": {"changedFields": ["name"], "conference": None}}
    error = error_of(result)
    assert error["path"] == ["updateConference", "conference"]
    assert error["extensions"]["code"] == "PBX_UNAVAILABLE"
    assert on_pbx(stack, "6400")["name"] == "Applied"
    assert await room_name(stack, "6400") == "Applied"


async def test_mutation_pbx_down_is_unavailable_without_a_resend(
    gateway_stack: StackFactory,
) -> None:
    """The PBX stalls past the read timeout: one attempt, PBX_UNAVAILABLE."""
    stack = await gateway_stack(pbx_timeout=0.5)
    stack.pbx.stall_next(1, seconds=5, endpoint="conference/update")
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Slow")
    stack.pbx.clear_faults()
    assert error_of(result)["extensions"]["code"] == "PBX_UNAVAILABLE"
    assert stack.calls("conference/update") == 1
