"""Which of our addresses the PBX sees: the ``ipaddr`` the heartbeat must carry.

The S-Series v2 heartbeat page marks ``ipaddr`` as required (``pbx-api.md``, "Heartbeat"): the
local address of the gateway's connection to the PBX. The best source is that connection
itself (httpx exposes the socket's ``client_addr`` while the response is open), read on every
call. Before any call has been made, or behind a transport with no socket (tests in-process),
the fallback asks the operating system which local address would route to the PBX's IP: a
UDP socket ``connect`` sends no packet. The last resort (a PBX known by name only, before
any call) is the loopback address, so a heartbeat is never sent with an empty ``ipaddr``;
a query-only gateway takes no pushed events, so the value matters little to it then.
"""

from __future__ import annotations

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


def routed_address(base_url: str) -> str:
    """The local IP the operating system would use to reach ``base_url``'s host, when that
    host is an IP address; the last resort otherwise. A host name is not resolved here: a
    resolver that hangs would hold a thread (and the shutdown waiting for it), and the
    connection itself gives the real address from the first call on."""
    parts = urlsplit(base_url)
    try:
        host = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return LAST_RESORT
    port = parts.port or (443 if parts.scheme == "https" else 80)
    family = socket.AF_INET6 if host.version == 6 else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((str(host), port))  # UDP: picks a route, sends nothing
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
