"""HTTP push, the report method that POSTs each event to the application (api-reports.html).

The target comes from the login: the caller's own address and the ``port`` it gave (default
8260), plus ``url``: relative to that address (``urltag`` 0, the default) or absolute
(``urltag`` 1, "110.22.2.3:8260/report"). Each event is one POST of the JSON with the
documented headers (``User-Agent: WebAPI``, ``Accept: application/json``) on a new
connection; an answer other than 200, or no answer, is tried again ``push_retries`` times
(v1: "the PBX will send API reports repeatedly"; the bound is chosen).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.simulator.stats import SimulatorStats

DEFAULT_PUSH_PORT = "8260"
PUSH_TIMEOUT_SECONDS = 5.0
_RETRY_PAUSE_SECONDS = 0.05
PUSH_HEADERS = {
    "User-Agent": "WebAPI",
    "Accept": "application/json",
    "Content-Type": "application/json",
    "Connection": "close",
}


class PushTargetError(ValueError):
    """The login's ``port``/``url``/``urltag`` do not make an address (answered 20008)."""


@dataclass(frozen=True)
class PushTarget:
    """Where one logged-in application wants its events."""

    url: str


def push_target(host: str, body: dict[str, Any]) -> PushTarget:
    """The target a login body asks for, from the caller's address ``host``."""
    port = str(body.get("port") or DEFAULT_PUSH_PORT).strip()
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise PushTargetError(f"port must be 1-65535, got {port!r}")
    url = str(body.get("url") or "").strip()
    if str(body.get("urltag") or "0").strip() == "1" and url:
        return PushTarget(url if "://" in url else f"http://{url}")
    address = f"[{host}]" if ":" in host else host
    return PushTarget(f"http://{address}:{port}/{url.lstrip('/')}")


async def push_event(
    target: PushTarget, event: dict[str, Any], retries: int, stats: SimulatorStats
) -> None:
    """POST one event to ``target``; counted in ``stats.live`` as sent or failed."""
    async with httpx.AsyncClient(timeout=PUSH_TIMEOUT_SECONDS, headers=PUSH_HEADERS) as client:
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(_RETRY_PAUSE_SECONDS)
            try:
                response = await client.post(target.url, json=event)
            except httpx.HTTPError:
                stats.live["push_failures"] += 1
                continue
            if response.status_code == 200:
                stats.live["push_events_sent"] += 1
                return
            stats.live["push_failures"] += 1
    stats.live["push_events_lost"] += 1
