"""The probes that tell which firmware variant the device is, none of which changes anything.

(About 300 lines: one short function per probe, each with the reading it classifies.)

pbx-api.md leaves open questions each firmware answers its own way; every probe here asks one,
with a call that only reads or that the PBX refuses before acting:

- ``rooms``: one ``conference/query`` for ``all``: which room fields the firmware sends
  (only field names are kept, never a value: rooms carry PINs);
- ``unknown numbers``: one query mixing a listed number with one the listing lacks:
  left out, an empty list, no list at all, or the whole batch ``Failed``;
- ``heartbeat``: which body is accepted, ``{"ipaddr": ...}`` (what the gateway sends) or ``{}``;
- ``endpoints``: the live-conference and member-control endpoints, each called with a blank
  ``number`` (refused as a blank parameter where it exists, 10003 where it does not), so
  nobody is ever kicked, muted or added;
- ``tokens``: whether a second login with the same, just accepted credentials ends the first
  token (one token per user). A second *successful* login risks nothing toward the lockout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from gateway.conference_codec import ALL, WIRE_NAMES
from gateway.doctor.options import DoctorOptions
from gateway.doctor.report import Report, Status
from gateway.doctor.wire import Reply, Wire
from gateway.pbx.errnos import TOKEN_ERRNOS

UNSUPPORTED_REQUEST: Final = "10003"
CONFERENCE_ENDPOINTS: Final = (
    "conference/query_in_session",
    "conference/kick_member",
    "conference/mute_member",
    "conference/unmute_member",
    "conference/add_member",
)
_FIELD_ERAS: Final = {
    "allowinvite": "no allowinvite: as on the draft S-Series v2 page",
    "musiconhold": "no musiconhold: an API build before 2021-01-28, when it was added",
    "mute": "no mute or prompt: as on K2 models and older builds",
    "prompt": "no mute or prompt: as on K2 models and older builds",
}


def _unexpected(report: Report, name: str, reply: Reply) -> None:
    report.add(
        name,
        Status.WARN,
        f"could not tell: {reply.describe()}",
        "run doctor again; report it with this output if it stays",
    )


async def probe_rooms(wire: Wire, token: str, report: Report) -> list[str]:
    """The ``rooms`` row; the listed numbers (empty when the listing failed)."""
    reply = await wire.post("conference/query", {"number": ALL}, token=token)
    rooms = reply.payload.get("conferences") if reply.succeeded else None
    if not isinstance(rooms, list):
        if reply.succeeded:
            report.add(
                "rooms",
                Status.PROBLEM,
                "the `all` listing has no conferences list",
                "report it with this output",
            )
        else:
            report.add(
                "rooms",
                Status.PROBLEM,
                f"the `all` listing failed: {reply.describe()}",
                "check that the API user may query conferences; run doctor again",
            )
        return []
    records = [room for room in rooms if isinstance(room, Mapping)]
    findings = report.findings
    findings.rooms = len(records)
    if not records:
        report.add(
            "rooms",
            Status.WARN,
            "no conference rooms on this PBX: which fields rooms carry cannot be seen",
            "create a room in the PBX web interface and run doctor again",
        )
        return []
    _field_findings(records, report)
    return [str(room["number"]) for room in records if isinstance(room.get("number"), str)]


def _field_findings(records: Sequence[Mapping[str, Any]], report: Report) -> None:
    findings = report.findings
    everywhere = [f for f in WIRE_NAMES if all(f in room for room in records)]
    nowhere = [f for f in WIRE_NAMES if not any(f in room for room in records)]
    partial = [f for f in WIRE_NAMES if f not in everywhere and f not in nowhere]
    extra = sorted({key for room in records for key in room if key not in WIRE_NAMES})
    findings.fields_present, findings.fields_absent = everywhere, nowhere
    findings.fields_partial, findings.fields_extra = partial, extra
    result = f"{len(records)} room(s)"
    if not (nowhere or partial):
        result += "; every field present"
    if nowhere:
        notes = list(dict.fromkeys(_FIELD_ERAS[f] for f in nowhere if f in _FIELD_ERAS))
        result += f"; absent: {', '.join(nowhere)}"
        result += f" ({'; '.join(notes)})" if notes else ""
    if partial:
        result += f"; in some rooms only: {', '.join(partial)}"
    if extra:
        result += f"; fields the documents do not list: {', '.join(extra)}"
    if {"number", "name"} & {*nowhere, *partial}:
        # Without its number a room cannot be matched to a request at all.
        report.add("rooms", Status.PROBLEM, result, "report it with `doctor --json` output")
    elif nowhere or partial:
        report.add(
            "rooms",
            Status.INFO,
            result,
            "nothing: the gateway answers null for a field the firmware does not send",
        )
    else:
        report.add("rooms", Status.OK, result)


def pick_unknown(numbers: Sequence[str]) -> str:
    """A number the ``all`` listing does not hold: one past the highest numeric one."""
    known = set(numbers)
    numeric = [int(n) for n in numbers if n.isascii() and n.isdigit()]
    candidate = max(numeric, default=6399) + 1
    while str(candidate) in known:
        candidate += 1
    return str(candidate)


async def probe_unknown_numbers(wire: Wire, token: str, numbers: list[str], report: Report) -> None:
    """The ``unknown numbers`` row: one batch of a listed number and an unlisted one."""
    name = "unknown numbers"
    if not numbers:
        report.add(name, Status.SKIPPED, "needs at least one room to mix with an unknown number")
        return
    known, unknown = numbers[0], pick_unknown(numbers)
    reply = await wire.post("conference/query", {"number": f"{known},{unknown}"}, token=token)
    findings = report.findings
    asked = f"a batch of {known} (listed) and {unknown} (not listed)"
    if reply.failed and reply.errno not in TOKEN_ERRNOS:
        findings.unknown_numbers, findings.unknown_errno = "failed", reply.errno
        result = f"{asked} fails as a whole ({reply.describe()}): 'failed'"
    elif reply.succeeded:
        mode = _answer_mode(reply.payload, known, unknown)
        findings.unknown_numbers = mode
        result = (
            f"{asked} answers Success "
            + {
                "omit": "without the unlisted one: 'omit'",
                "empty": "with an empty list, the listed room missing too: 'empty'",
                "missing": "with no conferences key: 'missing'",
                "unexpected": "with rooms that do not match the request",
            }[mode]
        )
    else:
        _unexpected(report, name, reply)
        return
    if findings.unknown_numbers == "unexpected":
        report.add(name, Status.WARN, result, "report it with `pbx-gateway doctor --json` output")
    elif findings.unknown_numbers == "omit":
        report.add(name, Status.OK, result)
    else:
        report.add(
            name,
            Status.INFO,
            result,
            "nothing: the gateway checks such a batch against the `all` listing before it "
            "calls any number unknown",
        )


def _answer_mode(payload: Mapping[str, Any], known: str, unknown: str) -> str:
    if "conferences" not in payload:
        return "missing"
    rooms = payload["conferences"]
    if not isinstance(rooms, list):
        return "unexpected"
    if not rooms:
        return "empty"
    returned = {room.get("number") for room in rooms if isinstance(room, Mapping)}
    return "omit" if returned == {known} else "unexpected"


async def probe_heartbeat(
    wire: Wire, token: str, local_ip: str, report: Report
) -> dict[str, str] | None:
    """The ``heartbeat`` row; a body the PBX accepts (the ipaddr form first), if any."""
    with_ip: dict[str, str] = {"ipaddr": local_ip}
    bare: dict[str, str] = {}
    with_reply = await wire.post("heartbeat", with_ip, token=token)
    bare_reply = await wire.post("heartbeat", bare, token=token)
    report.findings.heartbeat = {"ipaddr": with_reply.succeeded, "{}": bare_reply.succeeded}
    name = "heartbeat"
    if with_reply.succeeded and bare_reply.succeeded:
        report.add(name, Status.OK, f'accepted with {{"ipaddr": "{local_ip}"}} and with {{}}')
        return with_ip
    if with_reply.succeeded:
        report.add(
            name,
            Status.INFO,
            f"accepted only with ipaddr ({{}} answers {bare_reply.describe()}): ipaddr required",
            "nothing: the gateway's heartbeat sends ipaddr",
        )
        return with_ip
    if bare_reply.succeeded:
        report.add(
            name,
            Status.WARN,
            f"accepted only without ipaddr (with it: {with_reply.describe()})",
            "report it: the gateway's heartbeat sends ipaddr; until fixed its token lives "
            "while queries come, and a new login follows 30 idle minutes",
        )
        return bare
    report.add(
        name,
        Status.WARN,
        f"refused with ipaddr ({with_reply.describe()}) and without ({bare_reply.describe()})",
        "check the API user's rights; the gateway logs in again after 30 idle minutes",
    )
    return None


async def probe_endpoints(wire: Wire, token: str, report: Report) -> None:
    """The ``endpoints`` row: each conference endpoint called with a blank ``number``."""
    found: dict[str, bool | None] = {}
    odd: list[str] = []
    for endpoint in CONFERENCE_ENDPOINTS:
        # A blank number is refused before anything is done (pbx-api.md: 10004, a required
        # parameter is blank); an endpoint the firmware lacks answers 10003 first.
        reply = await wire.post(endpoint, {"number": ""}, token=token)
        if reply.failed and reply.errno == UNSUPPORTED_REQUEST:
            found[endpoint] = False
        elif reply.failed and reply.errno not in TOKEN_ERRNOS:
            found[endpoint] = True
        else:
            found[endpoint] = True if reply.succeeded else None
            odd.append(f"{endpoint.removeprefix('conference/')}: {reply.describe()}")
    report.findings.endpoints = found
    short = {name.removeprefix("conference/"): present for name, present in found.items()}
    present = [n for n, p in short.items() if p]
    absent = [n for n, p in short.items() if p is False]
    result = (
        f"present: {', '.join(present) or 'none'}; absent (10003): {', '.join(absent) or 'none'}"
    )
    if odd:
        result += f"; odd answers to a blank number: {'; '.join(odd)}"
    report.add(
        "endpoints",
        Status.WARN if odd else Status.INFO,
        result,
        "for information: the gateway itself calls only conference/query and conference/update",
    )


async def probe_single_token(
    wire: Wire,
    options: DoctorOptions,
    first: str,
    heartbeat_body: dict[str, str] | None,
    report: Report,
) -> list[str]:
    """The ``tokens`` row; the tokens still live afterwards (``first`` and/or a second)."""
    name = "tokens"
    if not options.probe_tokens:
        report.add(name, Status.SKIPPED, "not probed (--no-token-probe)")
        return [first]
    if heartbeat_body is None:
        report.add(name, Status.SKIPPED, "no heartbeat form works to test the first token with")
        return [first]
    body = {"username": options.username, "password": options.password.current_md5().reveal()}
    reply = await wire.post("login", body)
    second = reply.payload.get("token") if reply.succeeded else None
    if not isinstance(second, str) or not second:
        report.add(
            name,
            Status.WARN,
            f"a second login with the accepted credentials answered {reply.describe()}; "
            "not retried",
            "the PBX may allow one session per API user: run one gateway (or one fleet "
            "sharing its token through GATEWAY_REDIS_URL) per API user",
        )
        return [first]
    check = await wire.post("heartbeat", heartbeat_body, token=first)
    if check.succeeded:
        report.findings.single_token = False
        report.add(name, Status.OK, "a second login leaves the first token working")
        return [first, second]
    if check.failed and check.errno in TOKEN_ERRNOS:
        report.findings.single_token = True
        report.add(
            name,
            Status.INFO,
            f"one token per user: a second login ended the first ({check.describe()})",
            "let nothing else log in with these API credentials while the gateway runs: each "
            "login ends the other's token (the gateway logs in again); a fleet shares one "
            "token through GATEWAY_REDIS_URL",
        )
        return [second]
    _unexpected(report, name, check)
    return [first, second]
