"""A microservice's use of the gateway: every conference room, typed, and a short report.

    GATEWAY_API_KEY=... python examples/service/conference_report.py [--url URL]

One POST to ``/graphql`` with plain httpx and the service's API key in ``X-API-Key`` (make
one with ``pbx-gateway api-key --name conference-report --scope conferences:read``; it is
read from the environment, never the command line, where ``ps`` would show it). The answer
is read into TypedDicts written to match ``schema.graphql`` (a test checks they do), so
mypy checks every field this program touches. Prints the rooms that need a PIN and the
rooms that wait for a moderator; when the PBX was unreachable and the gateway answered
from its last known data, says how old that is. Exit status: 0 printed, 1 no answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NotRequired, TypedDict, cast

import httpx

DEFAULT_URL = "http://127.0.0.1:8000/graphql"
QUERY = """
query ConferenceReport {
  conferences {
    number
    name
    hasParticipantPassword
    hasModeratorPassword
    waitForModerator
    moderators
  }
}
"""

# --- the answer's shape, as schema.graphql defines it -------------------------------------


class Conference(TypedDict):
    """The fields of ``Conference`` that QUERY selects."""

    number: str
    name: str
    # None: the PBX does not report it (older firmware leaves some settings out)
    hasParticipantPassword: bool | None
    hasModeratorPassword: bool | None
    waitForModerator: bool | None
    moderators: list[str] | None


class Query(TypedDict):
    """``data``: the root fields QUERY selects."""

    conferences: list[Conference | None]  # None: a room the gateway could not read (see errors)


class GraphQLError(TypedDict):
    message: str
    extensions: NotRequired[dict[str, object]]


class Stale(TypedDict):
    """``extensions.stale``: served from the gateway's last known data (gateway/staleness.py)."""

    code: str
    message: str
    oldestAgeSeconds: float


class Extensions(TypedDict, total=False):
    stale: Stale


class Response(TypedDict, total=False):
    data: Query | None
    errors: list[GraphQLError]
    extensions: Extensions


# --- asking and reporting -----------------------------------------------------------------


class NoAnswer(Exception):
    """The gateway gave no data: unreachable, refused the key, or only errors."""


def fetch(url: str, api_key: str) -> Response:
    """The gateway's answer to QUERY."""
    try:
        reply = httpx.post(
            url,
            json={"query": QUERY, "operationName": "ConferenceReport"},
            headers={"Accept": "application/graphql-response+json", **_credentials(api_key)},
            timeout=20,  # the gateway gives up on the PBX after 15 s (GATEWAY_REQUEST_DEADLINE)
        )
    except httpx.HTTPError as exc:
        raise NoAnswer(f"cannot reach {url}: {exc}") from exc
    try:
        body = reply.json()
    except ValueError:
        raise NoAnswer(f"{url} answered HTTP {reply.status_code} without JSON") from None
    if not isinstance(body, dict):
        raise NoAnswer(f"{url} answered HTTP {reply.status_code} with unexpected JSON")
    return cast(Response, body)


def _credentials(api_key: str) -> dict[str, str]:
    # Without a key the request is anonymous: enough for a gateway with GATEWAY_AUTH=none.
    return {"X-API-Key": api_key} if api_key else {}


def report(answer: Response) -> list[str]:
    """The report's lines; NoAnswer when the answer holds no rooms."""
    data = answer.get("data")
    errors = answer.get("errors", [])
    if data is None:
        problems = "; ".join(error["message"] for error in errors) or "no data"
        raise NoAnswer(f"the gateway answered without data: {problems}")
    rooms = [room for room in data["conferences"] if room is not None]
    with_pin = [room for room in rooms if _pins(room)]
    waiting = [room for room in rooms if room["waitForModerator"]]
    lines = [f"{len(rooms)} conference rooms"]
    stale = answer.get("extensions", {}).get("stale")
    # REVALIDATING: just past the gateway's TTL and being refreshed, not an outage.
    if stale is not None and stale["code"] != "REVALIDATING":
        minutes = int(stale["oldestAgeSeconds"] // 60)
        lines.append(f"PBX unreachable ({stale['code']}): data from {minutes} minutes ago")
    lines.append(f"\nRooms with a PIN ({len(with_pin)}):")
    lines += [f"  {room['number']:<6} {room['name']:<24} {_pins(room)}" for room in with_pin]
    lines.append(f"\nRooms waiting for a moderator ({len(waiting)}):")
    lines += [f"  {room['number']:<6} {room['name']:<24} {_moderators(room)}" for room in waiting]
    lines += [f"\nwarning: {error['message']}" for error in errors]
    return lines


def _pins(room: Conference) -> str:
    """Whose PIN the room has: "members", "moderator", "members + moderator" or ""."""
    whose = [
        *(["members"] if room["hasParticipantPassword"] else []),
        *(["moderator"] if room["hasModeratorPassword"] else []),
    ]
    return " + ".join(whose)


def _moderators(room: Conference) -> str:
    if room["moderators"] is None:
        return "moderators not reported by the PBX"
    if not room["moderators"]:
        return "no fixed moderators"
    return "moderators " + ", ".join(room["moderators"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    api_key = os.environ.get("GATEWAY_API_KEY", "")
    try:
        lines = report(fetch(args.url, api_key))
    except NoAnswer as exc:
        print(f"conference-report: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
