"""The moderator controls: mute, unmute, remove or invite participants of a running room.

One PBX call per action, never resent blindly (``idempotent=False``: a lost connection
leaves it unknown whether the PBX acted). The session still resends once after a token
error, after one new login: the PBX refused to authenticate the request, so it did not act.

The wire (``pbx-api.md`` "Moderator controls"; the simulator plays it): every endpoint
takes ``number`` and ``operator`` (an extension that is a moderator and in the room); the
members go in ``membernumber`` (``conference/kick_member``, ``mute_member``,
``unmute_member``) or ``invitemember`` (``conference/add_member``, with an optional
``dialpermission``), as one number, a comma list or ``all``.

Two namings exist for mute and unmute: S-Series ``conference/mute_member`` /
``unmute_member`` and K2 v2's ``conference/mute`` / ``unmute``. An absent endpoint answers
10003 before doing anything, so on 10003 the other name is tried once; the name that
answered is remembered per session (:class:`ControlNames`, one per :class:`PbxSession`
held beside it: :func:`names_for`), so a K2 pays the extra call
once per process, not per action. 10003 under both names (or on an endpoint with one
name) is :class:`PbxFeatureUnavailableError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final
from weakref import WeakKeyDictionary

from gateway.errors import (
    PbxApiError,
    PbxConnectionError,
    PbxFeatureUnavailableError,
    PbxProtocolError,
    PbxTimeoutError,
)
from gateway.pbx.session import PbxSession

UNSUPPORTED: Final = "10003"
BLANK: Final = "10004"
NOT_A_MODERATOR_OR_MEMBER: Final = "10006"
NOT_IN_SESSION: Final = "10110"
ALL: Final = "all"


class ControlAction(Enum):
    """What a moderator does to participants; the value names it in logs and messages."""

    MUTE = "mute"
    UNMUTE = "unmute"
    REMOVE = "remove"
    INVITE = "invite"


# Each action's endpoint names, the preferred first (S-Series v2), and its member field.
ENDPOINTS: Final[dict[ControlAction, tuple[str, ...]]] = {
    ControlAction.MUTE: ("conference/mute_member", "conference/mute"),
    ControlAction.UNMUTE: ("conference/unmute_member", "conference/unmute"),
    ControlAction.REMOVE: ("conference/kick_member",),
    ControlAction.INVITE: ("conference/add_member",),
}
MEMBER_FIELD: Final = {
    ControlAction.MUTE: "membernumber",
    ControlAction.UNMUTE: "membernumber",
    ControlAction.REMOVE: "membernumber",
    ControlAction.INVITE: "invitemember",
}


@dataclass(frozen=True, slots=True)
class MemberAction:
    """One validated action: ``members`` empty means everyone but the operator (``all``)."""

    action: ControlAction
    number: str
    operator: str
    members: tuple[str, ...] = ()
    dial_permission: str | None = None

    @property
    def everyone(self) -> bool:
        """Whether the action names everyone (``all``) rather than listed members."""
        return not self.members


@dataclass
class ControlNames:
    """Which endpoint name last answered for each action (S-Series until told otherwise)."""

    preferred: dict[ControlAction, str] = field(default_factory=dict)

    def order(self, action: ControlAction) -> tuple[str, ...]:
        """The names to try, the one that last answered first."""
        names = ENDPOINTS[action]
        first = self.preferred.get(action, names[0])
        return (first, *(name for name in names if name != first))


# Beside the session rather than in it: the names are this module's business, and they
# live exactly as long as the session whose PBX answered them.
_NAMES: WeakKeyDictionary[PbxSession, ControlNames] = WeakKeyDictionary()


def names_for(session: PbxSession) -> ControlNames:
    """The endpoint names ``session``'s PBX answered to so far."""
    names = _NAMES.get(session)
    if names is None:
        names = _NAMES[session] = ControlNames()
    return names


def encode_action(action: MemberAction) -> dict[str, str]:
    """The request body (both namings take the same): number, operator, the members."""
    body = {
        "number": action.number,
        "operator": action.operator,
        MEMBER_FIELD[action.action]: ",".join(action.members) if action.members else ALL,
    }
    if action.dial_permission is not None:
        body["dialpermission"] = action.dial_permission
    return body


async def apply_action(session: PbxSession, action: MemberAction) -> str:
    """Send ``action`` to the PBX; return the endpoint that took it, or raise a PbxError.

    Only a 10003 (the PBX has no such endpoint, so it did nothing) leads to a second call,
    under the other name; any other failure is raised at once, mapped by :func:`_refusal`.
    """
    names = names_for(session)
    tried = names.order(action.action)
    unsupported: list[PbxApiError] = []
    for endpoint in tried:
        try:
            await session.call(endpoint, encode_action(action), idempotent=False)
        except PbxApiError as exc:
            if exc.endpoint != endpoint:
                raise  # the login before it failed: nothing was sent
            if exc.errno == UNSUPPORTED:
                unsupported.append(exc)
                continue
            raise _refusal(action, exc) from exc
        names.preferred[action.action] = endpoint
        return endpoint
    last = unsupported[-1]  # every action has at least one name
    raise PbxFeatureUnavailableError(
        f"this PBX's firmware cannot {action.action.value} conference participants: it "
        f"answered {' and '.join(tried)} with errno 10003 (unsupported API request); run "
        "`pbx-gateway doctor` to see which live-conference endpoints it has, and update the "
        "PBX's firmware",
        endpoint=last.endpoint,
        errno=last.errno,
        meaning=last.meaning,
        errordata=last.errordata,
    ) from last


def _refusal(action: MemberAction, exc: PbxApiError) -> PbxApiError:
    """A refusal with a message saying what to do; other errors keep their class."""
    if type(exc) is not PbxApiError:
        return exc  # rate limits, transient errnos: their own classes say it
    room = action.number
    advice = {
        NOT_A_MODERATOR_OR_MEMBER: (
            f"the operator {action.operator} is not a moderator in room {room} right now, or "
            f"a member named is not in it (or, for an invitation, already is): join the room "
            "as a moderator (an extension in its moderators, or with the moderator PIN) and "
            "check the members against the room's participants"
        ),
        NOT_IN_SESSION: (
            f"room {room} is not in session (nobody is in it) or does not exist: a moderator "
            "must be in the room first"
        ),
        BLANK: (
            f"the PBX found a parameter blank for room {room}: the gateway checks number, "
            "operator and members before sending, so report it as a gateway bug"
        ),
    }.get(exc.errno or "")
    if advice is None:
        advice = f"{exc.meaning}; nothing was done"
    return PbxApiError(
        f"the PBX refused to {action.action.value} participants of room {room} "
        f"(errno {exc.errno}): {advice}",
        endpoint=exc.endpoint,
        errno=exc.errno,
        meaning=exc.meaning,
        errordata=exc.errordata,
    )


def may_have_acted(error: Exception) -> bool:
    """Whether a failed :func:`apply_action` may still have been done on the PBX: a control
    request may have reached it but no readable answer came back. A decoded refusal, a
    refusal before sending (breaker, queue full) or a failed login did nothing."""
    unknown = (PbxTimeoutError, PbxConnectionError, PbxProtocolError)
    names = {name for names in ENDPOINTS.values() for name in names}
    return isinstance(error, unknown) and error.endpoint in names
