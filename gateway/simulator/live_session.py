"""Conferences in session: who is in each room right now, under the PBX's rules.

pbx-api.md "Live conferences": a member is an extension (``ext``), an outside caller who dialled
in (``inbound``) or an outside number the room called out to (``outbound``); each has a channel
id and a ``memberstatus``: ``ANSWERED`` (dialled in), ``ANSWER`` (accepted an invitation) or
``HOLD`` (waiting for the moderator). Rules played here, each marked in the README table:

- a room with ``waitformoderator=yes`` puts members on ``HOLD`` while no moderator is in it;
  the first moderator releases them, and (chosen) they go back on hold when the last leaves;
- a moderator is an extension named in the room's ``moderators`` (or one that joined with the
  moderator PIN: ``moderator=True``);
- an invited member rings first and joins with ``ANSWER`` when they pick up;
- a number is in a room once (chosen); a room's session (its ``callid``) starts with its first
  member and ends with its last.

Every change that adds or removes a participant calls ``on_change`` once with the room, which
is how ConferenceStatus events are made (``report_hub``); mute changes no participant count and
sends nothing (the event is documented as "when the number of participants changes").
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from gateway.simulator.conference_rules import Conference

MemberKind = Literal["ext", "inbound", "outbound"]
MEMBER_KINDS: tuple[str, ...] = get_args(MemberKind)
ANSWER, ANSWERED, HOLD = "ANSWER", "ANSWERED", "HOLD"
DEFAULT_TRUNK = "siptrunk"
# Chosen: invitees with at most this many digits are extensions, longer numbers go out a trunk.
MAX_EXTENSION_DIGITS = 5
_OUTSIDE_CHARACTERS = frozenset("0123456789+*#")
MAX_MEMBERS_PER_ROOM = 200


class LiveRuleError(ValueError):
    """A live change the PBX would refuse (unknown member, a number twice, a bad number)."""


@dataclass
class Member:
    """One participant; ``number`` is the one a person recognises (extension or outside)."""

    kind: MemberKind
    number: str
    channelid: str
    joined_by: str  # ANSWERED (dialled in) or ANSWER (accepted an invitation)
    moderator: bool
    joined_at: float
    trunk: str = ""
    # inbound: the number the caller dialled; outbound: who called out (the room's number).
    other: str = ""
    muted: bool = False
    holding: bool = False

    @property
    def memberstatus(self) -> str:
        """The wire status: HOLD while waiting for a moderator, else how they joined."""
        return HOLD if self.holding else self.joined_by

    def wire(self, *, callpath: str | None = None) -> dict[str, Any]:
        """``{"ext": {...}}`` and friends, as the ConferenceStatus example shows them."""
        if self.kind == "ext":
            info: dict[str, str] = {"number": self.number}
        elif self.kind == "inbound":
            info = {"from": self.number, "to": self.other, "trunkname": self.trunk}
        else:
            info = {"from": self.other, "to": self.number, "trunkname": self.trunk}
        info["channelid"] = self.channelid
        info["memberstatus"] = self.memberstatus
        if callpath is not None:
            info["callpath"] = callpath
        return {self.kind: info}

    def admin_view(self, now: float) -> dict[str, Any]:
        """Everything the simulator knows, for ``GET /__simulator/live`` (duration: chosen)."""
        return {
            **next(iter(self.wire().values())),
            "kind": self.kind,
            "moderator": self.moderator,
            "muted": self.muted,
            "seconds_in_room": round(max(0.0, now - self.joined_at), 3),
        }


@dataclass
class Invite:
    """A number the room is calling (``add_member``) that has not picked up yet."""

    kind: MemberKind
    number: str
    dialpermission: str


@dataclass
class Session:
    """A room in session: its call id and members in joining order."""

    number: str
    name: str
    callid: str
    started_at: float
    members: list[Member] = field(default_factory=list)
    ringing: list[Invite] = field(default_factory=list)

    def find(self, number_or_channel: str) -> Member | None:
        """The member with this number (or channel id), if in the room."""
        for member in self.members:
            if number_or_channel in (member.number, member.channelid):
                return member
        return None

    def has_moderator(self) -> bool:
        """Whether a moderator is in the room."""
        return any(member.moderator for member in self.members)


Notify = Callable[[str, str, "Session"], None]


def invitee_kind(number: str) -> MemberKind:
    """Chosen rule: short numbers are extensions, longer ones are dialled out through a trunk."""
    return "ext" if number.isdigit() and len(number) <= MAX_EXTENSION_DIGITS else "outbound"


def check_member_number(kind: str, number: Any) -> str:
    """``number`` stripped, or ``LiveRuleError`` when it cannot be a member of ``kind``."""
    if kind not in MEMBER_KINDS:
        raise LiveRuleError(f"kind must be one of {', '.join(MEMBER_KINDS)}, got {kind!r}")
    if not isinstance(number, str) or not number.strip():
        raise LiveRuleError("member number must be a non-blank string")
    text: str = number.strip()
    number = text
    if kind == "ext":
        if not (number.isascii() and number.isdigit()):
            raise LiveRuleError(f"an extension number is digits, got {number!r}")
    elif len(number) > 32 or not set(number) <= _OUTSIDE_CHARACTERS:
        raise LiveRuleError(f"an outside number is digits, +, * or #, got {number!r}")
    return text


class LiveBook:
    """Every room in session, keyed by number; rooms come and go with their members."""

    def __init__(self, on_change: Notify | None = None) -> None:
        self._sessions: dict[str, Session] = {}
        self._channels = itertools.count(0x1E)
        self._calls = itertools.count(100)
        self.on_change = on_change

    # --- reading ----------------------------------------------------------------------------

    def session(self, number: str) -> Session | None:
        """The session of room ``number``, or None when nobody is in it."""
        return self._sessions.get(number)

    def sessions(self) -> list[Session]:
        """Every session, in numeric room order (as ``all`` answers)."""
        return sorted(self._sessions.values(), key=lambda s: (len(s.number), s.number))

    def member_count(self) -> int:
        """Participants in every room together."""
        return sum(len(session.members) for session in self._sessions.values())

    # --- changes ------------------------------------------------------------------------------

    def join(
        self,
        room: Conference,
        number: str,
        *,
        now: float,
        kind: str = "ext",
        moderator: bool | None = None,
        trunk: str = "",
        other: str = "",
        invited: bool = False,
    ) -> Member:
        """``number`` enters ``room``: dialled in (``ANSWERED``) or invited (``ANSWER``)."""
        number = check_member_number(kind, number)
        session = self._sessions.get(room["number"])
        if session is not None and session.find(number) is not None:
            raise LiveRuleError(f"{number} is already in room {room['number']}")
        if session is not None and len(session.members) >= MAX_MEMBERS_PER_ROOM:
            raise LiveRuleError(f"room {room['number']} is full ({MAX_MEMBERS_PER_ROOM})")
        if session is None:
            session = Session(room["number"], room["name"], self._new_callid(), now)
            self._sessions[room["number"]] = session
        if moderator is None:
            moderator = kind == "ext" and number in _moderators(room)
        member = Member(
            kind=kind,  # type: ignore[arg-type]  # checked by check_member_number
            number=number,
            channelid=self._channel(kind, number, trunk or DEFAULT_TRUNK),
            joined_by=ANSWER if invited else ANSWERED,
            moderator=moderator,
            joined_at=now,
            trunk="" if kind == "ext" else (trunk or DEFAULT_TRUNK),
            other=other or room["number"],
        )
        session.members.append(member)
        self._apply_hold(room, session)
        self._notify(session)
        return member

    def leave(self, room: Conference, number_or_channel: str) -> Member:
        """A member hangs up (or is kicked); the session ends with its last member."""
        session = self._require(room["number"])
        member = session.find(number_or_channel)
        if member is None:
            raise LiveRuleError(f"{number_or_channel} is not in room {room['number']}")
        session.members.remove(member)
        self._apply_hold(room, session)
        if not session.members:
            # Chosen: the conference call ends with its last member; calls still ringing end too.
            session.ringing.clear()
            del self._sessions[room["number"]]
        self._notify(session)
        return member

    def set_muted(self, room_number: str, number_or_channel: str, muted: bool) -> Member:
        """Mute or unmute one member (no event: the participant count did not change)."""
        session = self._require(room_number)
        member = session.find(number_or_channel)
        if member is None:
            raise LiveRuleError(f"{number_or_channel} is not in room {room_number}")
        member.muted = muted
        return member

    def ring(self, room_number: str, invite: Invite) -> None:
        """Call an invitee (the room is in session: ``add_member`` needs its operator in it)."""
        session = self._require(room_number)
        if session.find(invite.number) is not None or any(
            pending.number == invite.number for pending in session.ringing
        ):
            raise LiveRuleError(f"{invite.number} is already in or called to room {room_number}")
        session.ringing.append(invite)

    def pick_up(self, room: Conference, number: str, *, now: float) -> Member:
        """A ringing invitee answers: they join with ``ANSWER``."""
        session = self._require(room["number"])
        invite = self._take_invite(session, number)
        return self.join(room, invite.number, now=now, kind=invite.kind, invited=True)

    def decline(self, room_number: str, number: str) -> None:
        """A ringing invitee does not answer (no event: nobody joined)."""
        session = self._require(room_number)
        self._take_invite(session, number)
        if not session.members and not session.ringing:
            del self._sessions[room_number]

    def clear(self, rooms: Iterable[Conference]) -> int:
        """Everyone in ``rooms`` hangs up, one leave (and one event) each; how many left."""
        count = 0
        for room in rooms:
            session = self._sessions.get(room["number"])
            if session is None:
                continue
            session.ringing.clear()
            for member in list(session.members):
                self.leave(room, member.channelid)
                count += 1
            self._sessions.pop(room["number"], None)
        return count

    # --- helpers ------------------------------------------------------------------------------

    def _require(self, room_number: str) -> Session:
        session = self._sessions.get(room_number)
        if session is None:
            raise LiveRuleError(f"room {room_number} is not in session")
        return session

    @staticmethod
    def _take_invite(session: Session, number: str) -> Invite:
        for invite in session.ringing:
            if invite.number == number:
                session.ringing.remove(invite)
                return invite
        raise LiveRuleError(f"{number} is not being called to room {session.number}")

    @staticmethod
    def _apply_hold(room: Conference, session: Session) -> None:
        # pbx-api.md: HOLD = "waiting for the moderator"; only rooms with waitformoderator=yes.
        waiting = room.get("waitformoderator") == "yes" and not session.has_moderator()
        for member in session.members:
            member.holding = waiting and not member.moderator

    def _channel(self, kind: str, number: str, trunk: str) -> str:
        # The shapes of the doc's example: PJSIP/1020-0000001e, PJSIP/trunk-siptrunk-endpoint-...
        sequence = next(self._channels)
        if kind == "ext":
            return f"PJSIP/{number}-{sequence:08x}"
        return f"PJSIP/trunk-{trunk}-endpoint-{sequence:08x}"

    def _new_callid(self) -> str:
        # The doc's example "1572313740.138": epoch seconds, a dot, a running number.
        return f"{int(time.time())}.{next(self._calls)}"

    def _notify(self, session: Session) -> None:
        if self.on_change is not None:
            self.on_change(session.number, session.name, session)


def _moderators(room: Conference) -> set[str]:
    return {part.strip() for part in room.get("moderators", "").split(",") if part.strip()}
