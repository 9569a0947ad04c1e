"""How one simulated PBX behaves: a frozen, validated ``SimulatorConfig``.

Everything a test or the ``simulator`` command may choose up front lives here; the few knobs that
may also change while the simulator runs are listed in ``RUNTIME_TUNABLES`` and changed through
``SimulatorState.configure`` (which builds a new config with ``dataclasses.replace``, so the same
validation applies at start and at run time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from gateway.simulator.conference_rules import FIELDS, K2_ABSENT_FIELDS

# Fields a firmware may leave out of a room; ``number`` and ``name`` are always there.
ABSENTABLE_FIELDS: tuple[str, ...] = tuple(f for f in FIELDS if f not in ("number", "name"))

UnknownNumbers = Literal["omit", "empty", "missing", "failed"]
UNKNOWN_NUMBERS_MODES: tuple[str, ...] = get_args(UnknownNumbers)
# Which names the member controls answer to: S-Series/Cloud v2 (``conference/mute_member``,
# ``conference/unmute_member``), K2 v2 (``conference/mute``, ``conference/unmute``), or none.
MemberControls = Literal["s-series", "k2", "none"]
MEMBER_CONTROLS_MODES: tuple[str, ...] = get_args(MemberControls)
# How ``conference/query_in_session`` answers a room nobody is in (or an unknown number).
IdleRooms = Literal["omit", "failed"]
IDLE_ROOMS_MODES: tuple[str, ...] = get_args(IdleRooms)
Transport = Literal["TCP", "HTTP"]
# Busy office: never more than one change per this many seconds (a bounded demo load).
MIN_BUSY_INTERVAL = 0.2

# The documented demo credentials: harmless, and printed by the ``simulator`` command.
DEMO_USERNAME = "api"
DEMO_PASSWORD = "yeastar-demo"  # noqa: S105 - a public demo value, documented

# A prefix the real API cannot have, so admin calls never collide with PBX endpoints.
ADMIN_PREFIX = "/__simulator"
API_PREFIX = "/api/v2.0.0"

RUNTIME_TUNABLES = frozenset(
    {
        "latency",
        "jitter",
        "serial",
        "unknown_numbers",
        "unknown_errno",
        "invalid_errno",
        "expired_errno",
        "k2",
        "absent_fields",
        "login_failure_errno",
        "heartbeat_requires_ipaddr",
        "new_login_kills_old_tokens",
        "token_ttl",
        "lockout_threshold",
        "lockout_seconds",
        "transport",
        "live_query",
        "member_controls",
        "events",
        "idle_rooms",
        "live_unknown_errno",
        "control_refused_errno",
        "empty_room_event",
        "invitees_answer",
        "push_retries",
    }
)


def password_digest(password: str) -> str:
    """What the login call carries instead of the password: its MD5 as 32 lower-case hex."""
    return hashlib.md5(password.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SimulatorConfig:
    """The simulated PBX's behaviour; defaults follow pbx-api.md (see each field's comment)."""

    username: str = DEMO_USERNAME
    password: str = DEMO_PASSWORD
    # Wire-shaped conference objects; None means the built-in realistic default set.
    conferences: Sequence[Mapping[str, str]] | None = None
    # Idle lifetime of a token (the PBX's 30 minutes); fractions of a second are fine in tests.
    token_ttl: float = 1800.0
    # The doc allows either answer for a timed-out token: 20006 (default) or 20004.
    expired_errno: str = "20006"
    # Unknown on the real PBX: whether a new login ends the same user's older tokens.
    new_login_kills_old_tokens: bool = False
    lockout_threshold: int = 5
    lockout_seconds: float = 600.0
    # K2 models leave out ``mute`` and ``prompt``.
    k2: bool = False
    # Room fields this firmware does not send at all (older API builds: ``musiconhold`` came in
    # 2021, a draft S-Series v2 page has no ``allowinvite``; pbx-api.md "Older API builds").
    absent_fields: tuple[str, ...] = ()
    # The errno of a rejected login: 20003 by S-Series v1, 30003 in K2 v1's own example.
    login_failure_errno: str = "20003"
    # The S-Series v2 heartbeat page marks ``ipaddr`` as required: refuse a heartbeat without it.
    heartbeat_requires_ipaddr: bool = False
    # Unknown on the real PBX: how it answers a number that does not exist.
    unknown_numbers: UnknownNumbers = "omit"
    unknown_errno: str = "10004"
    # Undocumented: the errno of a conference/update with an invalid field (chosen answer).
    invalid_errno: str = "10004"
    latency: float = 0.0
    jitter: float = 0.0
    # Serve one API request at a time, like the single-process Boa server.
    serial: bool = False
    # The report method set on the PBX (API Settings): TCP report connections or HTTP push.
    transport: Transport = "TCP"
    # --- live conferences (pbx-api.md "Live conferences", "Events", "Moderator controls") ---
    # Whether ``conference/query_in_session`` exists (10003 when not).
    live_query: bool = True
    # Which member-control endpoint names exist (``none``: all answer 10003).
    member_controls: MemberControls = "s-series"
    # Whether ConferenceStatus events are sent at all (off: the gateway must poll).
    events: bool = True
    # Chosen default ``omit``: an idle or unknown room is left out of the answer. ``failed``
    # plays the S-Series v2 change log's 10110 from query_in_session (2024-4-7).
    idle_rooms: IdleRooms = "omit"
    # 10110 "The conference number does not exist" (S-Series v2 change log).
    live_unknown_errno: str = "10110"
    # Undocumented (chosen): an operator who is not a moderator in the room, or a member who is
    # not in it; 10006 is "extension does not exist" in the v1 table.
    control_refused_errno: str = "10006"
    # Chosen: when the last member leaves, one ConferenceStatus with an empty member list.
    empty_room_event: bool = True
    # Chosen: an invited member picks up at once; off, they ring until ``live_answer``.
    invitees_answer: bool = True
    # The PBX's serial number, the events' ``sn`` (the value of the doc's example).
    device_sn: str = "369351034049"
    # The TCP report port (0: an ephemeral one, as tests need); the simulator command sets it.
    report_port: int = 0
    # HTTP push: further attempts after a failed POST (v1: "the PBX sends reports repeatedly").
    push_retries: int = 1
    # The scripted busy office: members come and go every ``busy_interval`` seconds.
    busy_office: bool = False
    busy_seed: int = 0
    busy_interval: float = 2.0

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("username must not be blank")
        for name in ("token_ttl", "lockout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("latency", "jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lockout_threshold < 1:
            raise ValueError(f"lockout_threshold must be >= 1, got {self.lockout_threshold!r}")
        if self.unknown_numbers not in UNKNOWN_NUMBERS_MODES:
            raise ValueError(
                f"unknown_numbers must be one of {', '.join(UNKNOWN_NUMBERS_MODES)}, "
                f"got {self.unknown_numbers!r}"
            )
        # JSON (the admin route) brings a list: keep one canonical, hashable form.
        object.__setattr__(self, "absent_fields", tuple(sorted(set(self.absent_fields))))
        unknown_fields = sorted(set(self.absent_fields) - set(ABSENTABLE_FIELDS))
        if unknown_fields:
            raise ValueError(
                f"absent_fields may name only {', '.join(ABSENTABLE_FIELDS)}, "
                f"got {', '.join(unknown_fields)}"
            )
        self._check_live()
        for name in (
            "expired_errno",
            "unknown_errno",
            "invalid_errno",
            "login_failure_errno",
            "live_unknown_errno",
            "control_refused_errno",
        ):
            value = getattr(self, name)
            if not (isinstance(value, str) and value.isdigit()):
                raise ValueError(f"{name} must be a string of digits, got {value!r}")

    def _check_live(self) -> None:
        choices = {
            "transport": ("TCP", "HTTP"),
            "member_controls": MEMBER_CONTROLS_MODES,
            "idle_rooms": IDLE_ROOMS_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if not 0 <= self.report_port <= 65535:
            raise ValueError(f"report_port must be between 0 and 65535, got {self.report_port!r}")
        if not 0 <= self.push_retries <= 5:
            raise ValueError(f"push_retries must be between 0 and 5, got {self.push_retries!r}")
        if self.busy_interval < MIN_BUSY_INTERVAL:
            raise ValueError(
                f"busy_interval must be >= {MIN_BUSY_INTERVAL}, got {self.busy_interval!r}"
            )
        if not self.device_sn:
            raise ValueError("device_sn must not be blank")

    def tunables(self) -> dict[str, object]:
        """The runtime-changeable part, as JSON-ready values (for the admin config route)."""
        values = {name: getattr(self, name) for name in sorted(RUNTIME_TUNABLES)}
        values["absent_fields"] = list(self.absent_fields)
        return values

    def fields_left_out(self) -> frozenset[str]:
        """The room fields this firmware never sends (K2's and any named in ``absent_fields``)."""
        k2_absent = K2_ABSENT_FIELDS if self.k2 else frozenset()
        return k2_absent | frozenset(self.absent_fields)
