"""``pbx-gateway doctor``: check a real PBX before going live, read-only and lockout-safe.

Modules, one concept each:

- ``options``: what to check, with the same settings ``serve`` reads (flags on top); a
  ``PBX_URL`` is analysed here (path, scheme, port) rather than refused, so doctor can say
  what is wrong with it.
- ``wire``: one raw API call whose answer is classified (envelope, redirect, HTML page,
  untrusted certificate...), never raised.
- ``reachability``: DNS, TCP connect, TLS and "does the API answer", all before any credential
  leaves this machine.
- ``login``: the one login attempt (never retried) and the logout at the end.
- ``variant``: the probes that tell which firmware variant the device is; ``matching``: which
  simulator profiles behave like that.
- ``probes``: the order of it all; ``report``: checks, recommended settings, table and JSON;
  ``command``: the subcommand.
"""

from gateway.doctor.probes import diagnose
from gateway.doctor.report import Report, Status

__all__ = ["Report", "Status", "diagnose"]
