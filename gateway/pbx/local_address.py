"""Which of our addresses the PBX sees: the ``ipaddr`` the heartbeat must carry.

The S-Series v2 heartbeat page marks ``ipaddr`` as required (``pbx-api.md``, "Heartbeat"): the
local address of the gateway's connection to the PBX. The best source is that connection
itself (httpx exposes the socket's ``client_addr`` while the response is open), read on every
call. Before any call has been made, or behind a transport with no socket (tests in-process),
the fallback asks the operating system which local address would route to the PBX: a UDP
socket ``connect`` sends no packet. The last resort is the loopback address, so a heartbeat
is never sent with an empty ``ipaddr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

import httpx

LAST_RESORT: Final = "127.0.0.1"


def connection_address(response: httpx.Response) -> str | None:
    """The local IP of the connection ``response`` came on, while it is still open."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        local = stream.get_extra_info("client_addr")
    except OSError:  # the socket is already closed
        return None
    if isinstance(local, tuple) and local and isinstance(local[0], str):
        return _valid(local[0])
    return None


async def routed_address(base_url: str) -> str:
    """The local IP the operating system would use to reach ``base_url``'s host."""
    parts = urlsplit(base_url)
    host = parts.hostname
    if not host:
        return LAST_RESORT
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), timeout=2.0
        )
    except (OSError, TimeoutError):
        return LAST_RESORT
    for family, kind, proto, _, target in infos:
        with contextlib.suppress(OSError), socket.socket(family, kind, proto) as probe:
            probe.connect(target)  # UDP: picks a route, sends nothing
            address = _valid(str(probe.getsockname()[0]))
            if address is not None:
                return address
    return LAST_RESORT


def _valid(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if address.is_unspecified:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
