"""Who may change a room, what the audit trail says, and what it must never say."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.security.identity import PINS, READ, WRITE
from tests.gateway_stack import Stack, StackFactory
from tests.mutation_helpers import (
    EVERY_SCOPE,
    UPDATE,
    UPDATE_NO_PINS,
    error_of,
    on_pbx,
    scopes,
    update,
)

PARTICIPANT_PIN = "90817263*"
MODERATOR_PIN = "5551234"
BAD_PIN = "4455x66"


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The structured fields of every ``gateway.audit`` line."""
    return [r.__dict__["fields"] for r in caplog.records if r.name == "gateway.audit"]


async def test_mutation_without_write_scope_is_forbidden(gateway_stack: StackFactory) -> None:
    """conferences:read alone cannot change a room; the PBX sees no call at all."""
    stack = await gateway_stack(security=scopes({READ, PINS}))
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Nope")
    assert result["data"] is None
    error = error_of(result)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert WRITE in error["message"]
    assert stack.calls("conference/update") == 0
    assert stack.calls("conference/query") == 0
    assert on_pbx(stack, "6400")["name"] == "Sales"


@pytest.mark.parametrize("field", ["participantPassword", "moderatorPassword"])
async def test_mutation_setting_a_pin_without_pins_scope_is_forbidden(
    gateway_stack: StackFactory, field: str
) -> None:
    """Write without conferences:pins cannot set (or clear) a PIN, even with other fields."""
    stack = await gateway_stack(security=scopes({READ, WRITE}))
    for value in ("1234", ""):
        result = await update(stack, UPDATE_NO_PINS, number="6400", name="X", **{field: value})
        error = error_of(result)
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert PINS in error["message"]
    assert stack.calls("conference/update") == 0
    assert on_pbx(stack, "6400")["name"] == "Sales"


async def test_mutation_write_scope_without_pins_changes_other_settings(
    gateway_stack: StackFactory,
) -> None:
    """Without a PIN in the input, conferences:write is enough; the payload still hides
    PINs from a caller without conferences:pins."""
    stack = await gateway_stack(security=scopes({READ, WRITE}))
    result = await update(stack, number="6401", name="Renamed")
    assert result["data"]["updateConference"]["conference"]["name"] == "Renamed"
    assert result["data"]["updateConference"]["conference"]["hasParticipantPassword"] is True
    assert {e["extensions"]["code"] for e in result["errors"]} == {"FORBIDDEN"}
    assert {tuple(e["path"][-1:]) for e in result["errors"]} == {
        ("participantPassword",),
        ("moderatorPassword",),
    }
    assert on_pbx(stack, "6401")["name"] == "Renamed"


async def test_mutation_audit_line_names_client_room_and_fields(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line on gateway.audit per change: who, which room, which fields, outcome."""
    stack = await gateway_stack()
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        await update(stack, number="6400", name="Audited", participantPassword=PARTICIPANT_PIN)
    (record,) = [r for r in caplog.records if r.name == "gateway.audit"]
    assert record.levelno == logging.INFO
    fields = record.__dict__["fields"]
    assert fields["action"] == "conference.update"
    assert fields["outcome"] == "applied"
    assert fields["client"].startswith("anonymous@")
    assert fields["client_kind"] == "anonymous"
    assert fields["number"] == "6400"
    assert fields["changed_fields"] == ["name", "participantPassword"]
    assert fields["request_id"]


async def test_mutation_audit_records_denied_invalid_and_refused_attempts(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Attempts that change nothing are on the audit trail too, with their outcome."""
    stack = await gateway_stack(security=scopes({READ, WRITE}))
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        await update(stack, UPDATE_NO_PINS, number="6400", moderatorPassword="1")
        await update(stack, UPDATE_NO_PINS, number="6400", name="a<b")
        stack.pbx.fail_next(1, "10025", "conference/update")
        await update(stack, UPDATE_NO_PINS, number="6400", name="Later")
    outcomes = [(f["outcome"], f.get("error_code")) for f in audit_records(caplog)]
    assert outcomes == [
        ("denied", None),
        ("invalid", "BAD_USER_INPUT"),
        ("refused", "PBX_RATE_LIMITED"),
    ]


async def _attempts_with_pins(stack: Stack) -> list[dict[str, Any]]:
    """Every way a change carrying PINs can end: applied, invalid, refused, unknown."""
    pins = {"participantPassword": PARTICIPANT_PIN, "moderatorPassword": MODERATOR_PIN}
    results = [await update(stack, number="6400", **pins)]
    results.append(await update(stack, number="6400", participantPassword=BAD_PIN))
    results.append(await update(stack, number="6400", moderatorPassword=BAD_PIN + "1" * 40))
    stack.pbx.fail_next(1, "10004", "conference/update")
    results.append(await update(stack, number="6400", **pins))
    stack.pbx.drop_next(1, "conference/update")
    results.append(await update(stack, number="6400", **pins))
    results.append(await update(stack, number="9999", **pins))  # a room the PBX lacks
    return results


async def test_mutation_pin_values_never_reach_a_log_record_or_an_error(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever happens to a change, no log record (any logger, any level, message,
    arguments, structured fields or traceback) and no error carries a PIN value."""
    stack = await gateway_stack()
    with caplog.at_level(logging.DEBUG):
        results = await _attempts_with_pins(stack)
    assert stack.calls("conference/update") == 4  # applied, refused, dropped, unknown room
    assert len(audit_records(caplog)) == 6
    everything = [
        json.dumps(
            {
                "message": record.getMessage(),
                "args": repr(record.args),
                "attributes": {k: repr(v) for k, v in record.__dict__.items()},
                "exception": caplog.handler.formatter.formatException(record.exc_info)
                if record.exc_info and caplog.handler.formatter
                else None,
            }
        )
        for record in caplog.records
    ]
    errors = [json.dumps(result.get("errors")) for result in results]
    assert all("errors" in result for result in results[1:])
    for pin in (PARTICIPANT_PIN, MODERATOR_PIN, BAD_PIN):
        assert not [line for line in everything if pin in line], pin
        assert not [line for line in errors if pin in line], pin


async def test_mutation_by_get_is_refused_without_a_pbx_call(gateway_stack: StackFactory) -> None:
    """A GET (a link, a prefetch, a cached URL) can never change a room: 405, no PBX call."""
    stack = await gateway_stack(security=scopes(EVERY_SCOPE))
    response = await stack.client.get(
        "/graphql",
        params={
            "query": UPDATE,
            "variables": json.dumps({"input": {"number": "6400", "name": "G"}}),
        },
    )
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert stack.calls("conference/update") == 0
    assert stack.calls("conference/query") == 0
    assert on_pbx(stack, "6400")["name"] == "Sales"
