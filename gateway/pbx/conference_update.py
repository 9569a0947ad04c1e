"""``conference/update``: validated changes in, one PBX call out, never retried.

The wire format is ``conference/query``'s (``pbx-api.md``), written by
:mod:`gateway.conference_codec`. Only the fields being changed are sent; the PBX keeps the
rest.

A change is not idempotent in the way a query is: a connection lost after the request
left leaves it unknown whether the PBX applied it, so the client never resends it
(``idempotent=False``), and :func:`may_have_applied` tells the caller when the cache must
be dropped all the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final

from gateway import conference_codec as codec
from gateway.conference_codec import Prompt
from gateway.errors import (
    PbxApiError,
    PbxConnectionError,
    PbxProtocolError,
    PbxRateLimitedError,
    PbxTimeoutError,
)
from gateway.pbx import errnos
from gateway.pbx.session import PbxSession

ENDPOINT: Final = "conference/update"

RETRY_AFTER_APPLIED_TOO_OFTEN: Final = 10.0
"""Seconds to suggest after errno 10025. The PBX does not say how long it throttles
configuration changes; this is the gateway's guess, sent as a hint (``retryAfter``)."""


@dataclass(frozen=True, slots=True)
class ConferenceChanges:
    """Validated new settings for one room; ``None`` means "leave unchanged".

    A PIN of ``""`` clears it; ``moderators=()`` leaves the room without fixed moderators.
    PINs are kept out of ``repr()`` so a stray log line cannot carry one.
    """

    number: str
    name: str | None = None
    participant_password: str | None = field(default=None, repr=False)
    moderator_password: str | None = field(default=None, repr=False)
    wait_for_moderator: bool | None = None
    allow_invite: bool | None = None
    moderators: tuple[str, ...] | None = None
    music_on_hold: bool | None = None
    mute: bool | None = None
    prompt: Prompt | None = None

    def changed(self) -> tuple[str, ...]:
        """The record's field names being changed, in declaration order."""
        return tuple(
            f.name
            for f in dataclasses.fields(self)
            if f.name != "number" and getattr(self, f.name) is not None
        )


def encode_changes(changes: ConferenceChanges) -> dict[str, str]:
    """The ``conference/update`` body: ``number`` plus each changed field, as strings."""
    body = {"number": changes.number}
    for name in changes.changed():
        field = codec.BY_ATTRIBUTE[name]
        body[field.wire] = codec.write(field, getattr(changes, name))
    return body


async def update_conference(session: PbxSession, changes: ConferenceChanges) -> None:
    """Send ``changes`` to the PBX once; raise a PbxError when it is not known to be applied.

    Errno 10025 becomes :class:`PbxRateLimitedError` (retryable, with a hint); any other
    refusal keeps its class, with a message that names the room.
    """
    body = encode_changes(changes)
    try:
        # Never retried on a lost connection (idempotent=False): the PBX may have applied
        # it. PbxSession still retries once after a token error (20004/20005/20006), after
        # one new login. That is safe: a token error is the PBX refusing to authenticate
        # the request at all (blank, unknown or timed-out token, pbx-api.md "Token
        # lifetime"), so it did not act on the body; the retry is the first attempt that
        # can change anything, and it is made once.
        await session.call(ENDPOINT, body, idempotent=False)
    except PbxApiError as exc:
        if exc.endpoint != ENDPOINT:
            raise  # the login before it failed: nothing was sent
        if exc.errno == errnos.APPLIED_TOO_OFTEN:
            raise PbxRateLimitedError(
                f"the PBX refused the change to room {changes.number}: configuration applied "
                f"too often (errno {exc.errno}); nothing was changed, send it again in "
                f"{RETRY_AFTER_APPLIED_TOO_OFTEN:.0f} s",
                endpoint=ENDPOINT,
                errno=exc.errno,
                meaning=exc.meaning,
                retry_after=RETRY_AFTER_APPLIED_TOO_OFTEN,
                errordata=exc.errordata,
            ) from exc
        if type(exc) is PbxApiError:
            raise PbxApiError(
                f"the PBX refused the change to room {changes.number}: {exc.meaning} "
                f"(errno {exc.errno}); it answers so for a room it does not have, too: "
                "check the number",
                endpoint=ENDPOINT,
                errno=exc.errno,
                meaning=exc.meaning,
                errordata=exc.errordata,
            ) from exc
        raise


def may_have_applied(error: Exception) -> bool:
    """Whether a failed :func:`update_conference` may still have changed the room.

    True when the request may have reached the PBX but no readable answer came back
    (timeout, dropped connection, garbage): the cache must then be dropped anyway. A
    decoded ``Failed`` answer, a refusal before sending (breaker, queue full) or a failed
    login changed nothing.
    """
    unknown = (PbxTimeoutError, PbxConnectionError, PbxProtocolError)
    return isinstance(error, unknown) and error.endpoint == ENDPOINT
