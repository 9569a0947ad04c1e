"""Firmware profiles: every reading of the PBX's documents the gateway must survive, by name.

pbx-api.md leaves several questions open (how an unknown number is answered, which fields an
older build sends, which errno a rejected login carries, whether the heartbeat needs ``ipaddr``,
whether a new login ends older tokens). Each profile is one device variant, written as the
``SimulatorConfig`` fields it changes. The integration tests run against every profile, and
``pbx-gateway doctor`` is tested against each, so no answer the documents allow is left
unproven. ``s-series-v2`` is the simulator's default; ``field-worst`` combines every
pessimistic reading at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.simulator.config import SimulatorConfig


@dataclass(frozen=True)
class FirmwareProfile:
    """One device variant: a name, what it models and where that comes from, and its settings."""

    name: str
    summary: str
    changes: Mapping[str, Any]

    def config(self, base: SimulatorConfig | None = None, **extra: Any) -> SimulatorConfig:
        """``base`` (the defaults when None) as this variant, then ``extra`` on top."""
        return dataclasses.replace(base or SimulatorConfig(), **{**self.changes, **extra})


def _profile(name: str, summary: str, **changes: Any) -> FirmwareProfile:
    return FirmwareProfile(name, summary, MappingProxyType(changes))


_ALL: tuple[FirmwareProfile, ...] = (
    _profile("s-series-v2", "S-Series v2 as the docs read: unknown numbers left out of the answer"),
    _profile(
        "pre-2021",
        "an API build before 2021-01-28: rooms without musiconhold, mute or prompt",
        absent_fields=("musiconhold", "mute", "prompt"),
    ),
    _profile(
        "draft-no-allowinvite",
        "the draft S-Series v2 page: rooms without allowinvite",
        absent_fields=("allowinvite",),
    ),
    _profile("k2", "a K2: rooms without mute or prompt", k2=True),
    _profile(
        "unknown-empty",
        "a batch with an unknown number answers Success with an empty conferences list",
        unknown_numbers="empty",
    ),
    _profile(
        "unknown-missing",
        "a batch with an unknown number answers Success with no conferences key",
        unknown_numbers="missing",
    ),
    _profile(
        "unknown-failed-10110",
        "a batch with an unknown number fails with errno 10110 (S-Series v2 change log)",
        unknown_numbers="failed",
        unknown_errno="10110",
    ),
    _profile(
        "login-30003",
        "a rejected login answers errno 30003 (K2 v1's own example), not 20003",
        login_failure_errno="30003",
    ),
    _profile(
        "heartbeat-ipaddr",
        "the heartbeat refuses a body without ipaddr (S-Series v2 marks it required)",
        heartbeat_requires_ipaddr=True,
    ),
    _profile(
        "single-token",
        "one live token per API user: a new login ends the older tokens",
        new_login_kills_old_tokens=True,
    ),
    _profile(
        "expired-20004",
        "a timed-out token answers 20004 (no such token) instead of 20006",
        expired_errno="20004",
    ),
    _profile(
        "no-live",
        "a firmware without live conferences: no query_in_session, member controls or events",
        live_query=False,
        member_controls="none",
        events=False,
    ),
    _profile(
        "k2-controls",
        "member controls under K2 v2's names: conference/mute and conference/unmute",
        member_controls="k2",
    ),
    _profile(
        "field-worst",
        "every pessimistic reading at once",
        absent_fields=("allowinvite", "musiconhold", "mute", "prompt"),
        unknown_numbers="empty",
        login_failure_errno="30003",
        heartbeat_requires_ipaddr=True,
        new_login_kills_old_tokens=True,
        expired_errno="20004",
    ),
)

PROFILES: Mapping[str, FirmwareProfile] = MappingProxyType({p.name: p for p in _ALL})
DEFAULT_PROFILE = "s-series-v2"


def profile_config(name: str, base: SimulatorConfig | None = None, **extra: Any) -> SimulatorConfig:
    """The config of the profile called ``name`` (``KeyError`` naming the choices otherwise)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise KeyError(
            f"no firmware profile {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None
    return profile.config(base, **extra)


# Every config field some profile sets: together they say which variant a config plays.
VARIANT_FIELDS: frozenset[str] = frozenset(key for p in _ALL for key in p.changes)


def matching_profile(config: SimulatorConfig) -> FirmwareProfile | None:
    """The profile whose variant ``config`` plays (credentials, rooms, latency aside), if any."""
    for profile in _ALL:
        reference = profile.config()
        if all(getattr(reference, f) == getattr(config, f) for f in VARIANT_FIELDS):
            return profile
    return None
