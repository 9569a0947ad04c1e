"""What each PBX ``errno`` means, what to do about it, and how the gateway reads it.

The table is the S-Series v2 error-code page (10002-10033, 20000-20010, 30001, 30003; see
``pbx-api.md``'s "Error numbers") plus 10110, "the conference number does not exist" (S-Series
v2 change log, 2024-4-7). Each code has its documented meaning and the advice a person
reading the error needs. Codes are strings on the wire (an int is accepted too, see
:func:`normalize_errno`); a code missing here is reported as undocumented, with its number.
"""

from __future__ import annotations

from typing import Final

TOKEN_ERRNOS: Final = frozenset({"20004", "20005", "20006"})
"""No such token / token blank / token timed out: log in again and retry once."""

TRANSIENT_ERRNOS: Final = frozenset({"20010", "30001", "30003"})
"""PBX-side trouble that passes on its own: the PBX could not answer right now (on calls
other than ``login``: a failed login is always a rejection, see ``client._login_rejection``)."""

BAD_CREDENTIALS: Final = "20003"
LOCKED_OUT: Final = "20002"
APPLIED_TOO_OFTEN: Final = "10025"
NO_SUCH_CONFERENCE: Final = "10110"

_BUG: Final = "the gateway sent a request this PBX cannot take: please report it as a gateway bug"
_CHECK_PBX: Final = "check it in the PBX web interface"
_PASSES: Final = "this usually passes: try again shortly, and check the PBX if it persists"

_TABLE: Final[dict[str, tuple[str, str]]] = {
    "10002": ("unsupported XML data format", _BUG),
    "10003": (
        "unsupported API request",
        "this firmware lacks the endpoint: the API needs firmware 30.13.0.30 or later, and "
        "some endpoints came later still; update the PBX",
    ),
    "10004": (
        "a required parameter is blank",
        "check the values sent (a conference number must not be empty); if they were all "
        "given, report it as a gateway bug",
    ),
    "10005": ("the callid does not exist", "the call has ended; nothing to change"),
    "10006": (
        "the extension does not exist",
        f"use extension numbers that exist on the PBX (moderators, members); {_CHECK_PBX}",
    ),
    "10007": ("the call does not exist", "the call has ended; nothing to change"),
    "10008": ("the extension is not idle", "try again when the extension is free"),
    "10009": (
        "the extension does not allow being monitored",
        f"allow monitoring for that extension; {_CHECK_PBX}",
    ),
    "10010": ("the monitor mode does not match", "use a monitor mode the extension allows"),
    "10011": ("the called number does not exist", "check the number"),
    "10012": ("the IVR does not exist", f"check the IVR number; {_CHECK_PBX}"),
    "10013": ("the queue does not exist", f"check the queue number; {_CHECK_PBX}"),
    "10014": ("the ring group does not exist", f"check the ring group number; {_CHECK_PBX}"),
    "10015": ("the call is not connected", "try again once the call is connected"),
    "10016": ("accepting or rejecting the call timed out", "the call was not handled in time"),
    "10017": (
        "the extension configuration failed",
        "the PBX could not save the change: check the values and the PBX's logs, then retry",
    ),
    "10018": (
        "the IVR configuration failed",
        "the PBX could not save the change: check the values and the PBX's logs, then retry",
    ),
    "10019": (
        "the queue configuration failed",
        "the PBX could not save the change: check the values and the PBX's logs, then retry",
    ),
    "10020": ("adding or changing an alarm failed", f"check the alarm settings; {_CHECK_PBX}"),
    "10021": ("the alarm does not exist", f"check the alarm; {_CHECK_PBX}"),
    "10022": ("the alarm already exists", "change the existing alarm instead"),
    "10023": ("the audio file does not exist", f"upload the prompt first; {_CHECK_PBX}"),
    "10024": (
        "the extension has no outbound call permission",
        f"grant the extension outbound permission; {_CHECK_PBX}",
    ),
    "10025": (
        "configuration applied too often",
        "nothing was changed: wait a few seconds and send the change again",
    ),
    "10026": ("the GSM module name does not exist", f"check the module name; {_CHECK_PBX}"),
    "10027": ("no idle GSM module", "try again when a GSM module is free"),
    "10028": ("the number cannot be blank", "give the number the request needs"),
    "10029": ("the SMS file could not be opened", _PASSES),
    "10030": ("the SMS contents cannot be blank", "give the message text"),
    "10031": ("the callee number does not meet the requirements", "check the number's format"),
    "10032": ("wrong password", "check the password or PIN given"),
    "10033": (
        "saving the extension's outbound route settings failed",
        f"check the outbound routes; {_CHECK_PBX}",
    ),
    "10110": (
        "the conference number does not exist",
        "check the number: rooms are created in the PBX web interface, not through the API",
    ),
    "20000": ("only JSON is supported", _BUG),
    "20001": ("only POST is supported", _BUG),
    "20002": (
        "login failed: this IP address is locked out",
        "an administrator can unblock the address in the PBX web interface, or wait 10 minutes",
    ),
    "20003": (
        "login failed: bad username or password",
        "fix PBX_USERNAME and the password setting, and check the API user is enabled",
    ),
    "20004": ("no such token", "the gateway logs in again by itself"),
    "20005": ("token blank", "the gateway logs in again by itself"),
    "20006": ("token timed out", "the gateway logs in again by itself"),
    "20007": ("request data blank", _BUG),
    "20008": ("port error", "check the port given at login (the API's event port)"),
    "20009": ("request blank", _BUG),
    "20010": ("handing the request to the API process failed", _PASSES),
    "30001": ("JSON memory allocation failed", _PASSES),
    "30003": ("API process not running", _PASSES),
}

DOCUMENTED: Final = frozenset(_TABLE)
"""Every errno with a documented meaning."""


def normalize_errno(raw: object) -> str | None:
    """The errno as a string of digits, or None when the PBX gave none we can read."""
    if isinstance(raw, bool):  # bool is an int subclass; True is no errno
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return raw.strip()
    return None


def errno_meaning(errno: str | None) -> str:
    """A person-readable meaning for ``errno``; undocumented codes say so."""
    if errno is None:
        return "the PBX reported a failure without an errno"
    entry = _TABLE.get(errno)
    return entry[0] if entry else f"undocumented errno {errno}"


def errno_advice(errno: str | None) -> str:
    """What a person should do about ``errno``."""
    entry = _TABLE.get(errno or "")
    if entry:
        return entry[1]
    return (
        "the PBX's error page does not list this code: check the request's values and the "
        "PBX's logs, and report the errno if it persists"
    )
