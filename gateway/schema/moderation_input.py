"""The moderator controls' inputs and their rules, checked before the PBX sees anything.

The rules (the PBX takes one number, a comma list or ``all`` in each field, so nothing
unchecked may reach it, or ``"4001,4002"`` would widen an action):

- ``number``: the room, 1 to 15 ASCII digits;
- ``operator``: the acting moderator's extension, 1 to 15 ASCII digits;
- ``members``: 1 to 50 distinct numbers of 1 to 15 ASCII digits each; or, for mute,
  unmute and remove, ``all: true`` instead (everyone in the room but the operator);
- ``dialPermission`` (invite only): the extension whose outbound permission is used to
  call out, 1 to 15 ASCII digits.

Every violation is collected and reported at once (:class:`InvalidFieldsError`), each
naming its field by the schema's name.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Final

import strawberry

from gateway.errors import InvalidFieldsError
from gateway.pbx.member_controls import ControlAction, MemberAction

MEMBERS_MAX: Final = 50
_DIGITS: Final = re.compile(r"[0-9]{1,15}")
_DIGITS_RULE: Final = "must be 1 to 15 digits (0-9) and nothing else"


@strawberry.input(
    description=(
        "Participants of a running conference to act on, and the moderator acting. Give "
        "`members`, or `all: true` for everyone in the room but the operator."
    )
)
class ConferenceParticipantsInput:
    number: str = strawberry.field(
        description='The room\'s number, such as "6401": 1 to 15 digits.'
    )
    operator: str = strawberry.field(
        description=(
            "The extension acting as moderator: it must be in the room as one of its "
            "moderators (the PBX checks). 1 to 15 digits."
        )
    )
    members: list[str] | None = strawberry.field(
        default=None,
        description=(
            f"The participants' numbers (extension, or an outside caller's number): 1 to "
            f"{MEMBERS_MAX}, each 1 to 15 digits, no repeats. Leave out with `all: true`."
        ),
    )
    all: bool = strawberry.field(
        default=False,
        description="Act on everyone in the room but the operator (instead of `members`).",
    )


@strawberry.input(
    description="Numbers to call into a running conference, and the moderator inviting them."
)
class InviteParticipantsInput:
    number: str = strawberry.field(
        description='The room\'s number, such as "6401": 1 to 15 digits.'
    )
    operator: str = strawberry.field(
        description=(
            "The extension inviting: it must be in the room as one of its moderators (the "
            "PBX checks). 1 to 15 digits."
        )
    )
    members: list[str] = strawberry.field(
        description=(
            f"The numbers to call (extensions, or outside numbers the PBX dials out): 1 to "
            f"{MEMBERS_MAX}, each 1 to 15 digits, no repeats."
        )
    )
    dial_permission: str | None = strawberry.field(
        default=None,
        description=(
            "The extension whose outbound-call permission the PBX uses to call outside "
            "numbers: 1 to 15 digits. Left out, the PBX uses the operator's."
        ),
    )


def validate_participants(action: ControlAction, data: ConferenceParticipantsInput) -> MemberAction:
    """The checked mute, unmute or remove, or InvalidFieldsError listing every rule broken."""
    violations = _room_rules(data.number, data.operator)
    if data.all and data.members is not None:
        violations.append(("members", "give either members or all: true, not both"))
    elif not data.all and data.members is None:
        violations.append(("members", "give the members' numbers, or all: true for everyone"))
    elif data.members is not None:
        violations += _member_rules(data.members)
    if violations:
        raise InvalidFieldsError(violations)
    members = () if data.all or data.members is None else tuple(data.members)
    return MemberAction(action, data.number, data.operator, members)


def validate_invite(data: InviteParticipantsInput) -> MemberAction:
    """The checked invitation, or InvalidFieldsError listing every rule broken."""
    violations = _room_rules(data.number, data.operator)
    violations += _member_rules(data.members)
    if data.dial_permission is not None and not _DIGITS.fullmatch(data.dial_permission):
        violations.append(("dialPermission", _DIGITS_RULE))
    if violations:
        raise InvalidFieldsError(violations)
    return MemberAction(
        ControlAction.INVITE,
        data.number,
        data.operator,
        tuple(data.members),
        dial_permission=data.dial_permission,
    )


def _room_rules(number: str, operator: str) -> list[tuple[str, str]]:
    violations = []
    if not _DIGITS.fullmatch(number):
        violations.append(("number", _DIGITS_RULE))
    if not _DIGITS.fullmatch(operator):
        violations.append(("operator", f"{_DIGITS_RULE}: the moderator's extension number"))
    return violations


def _member_rules(members: list[str]) -> list[tuple[str, str]]:
    broken: list[str] = []
    if not members:
        broken.append(f"must list 1 to {MEMBERS_MAX} numbers (got none)")
    if len(members) > MEMBERS_MAX:
        broken.append(f"must list at most {MEMBERS_MAX} numbers (got {len(members)})")
    bad = [f"members[{i}]" for i, n in enumerate(members) if not _DIGITS.fullmatch(n)]
    if bad:
        broken.append(f"each must be a number of 1 to 15 digits ({', '.join(bad[:5])} is not)")
    counts = Counter(n for n in members if _DIGITS.fullmatch(n))
    repeated = [number for number, count in counts.items() if count > 1]
    if repeated:
        broken.append(f"must not repeat a number ({', '.join(repeated[:5])})")
    return [("members", rule) for rule in broken]
