"""``/healthz`` and ``/readyz``: cheap probes that never call the PBX.

- ``/healthz``: the process is alive and serving (liveness). Always 200 while it answers,
  with the gateway's version.
- ``/readyz``: the gateway can answer queries (readiness): it holds a PBX token and a PBX
  request slot is not stuck on a call the PBX never finished, or it holds data it could
  serve (fresh or stale); in a fleet, also it can read the fleet's token and its own PBX
  credentials were not rejected. 503 otherwise, with the reasons in JSON, so
  an operator sees at once whether the PBX is down, the credentials are wrong, or the
  gateway has simply not been asked anything yet.

Both read state the gateway already has; a probe every second costs the PBX nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway import __version__
from gateway.pbx.breaker import CircuitState
from gateway.runtime import runtime_of


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers, and says which release it is."""
    return JSONResponse({"status": "ok", "version": __version__})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: logged in to the PBX, or holding servable data; why not, otherwise."""
    runtime = runtime_of(request)
    if runtime is None:
        return JSONResponse({"ready": False, "reasons": ["starting up"]}, status_code=503)
    session, store, breaker = runtime.session, runtime.store, runtime.client.breaker
    limiter = runtime.client.limiter
    checks: dict[str, Any] = {
        "pbxSession": "logged in" if session.has_token else "no token",
        "cachedConferences": store.holds_data,
        "circuit": breaker.state.value,
        "pbxSlots": {"limit": limiter.limit, "inUse": limiter.in_flight, "stuck": limiter.stuck},
    }
    if runtime.fleet is not None:
        up = runtime.fleet.link.up
        checks["redis"] = "up" if up else "down: working on local state"
    reasons: list[str] = []
    blocked = session.blocked_reason
    if blocked is not None:
        reasons.append(f"{blocked.code}: {blocked.message}")
    if breaker.state is not CircuitState.CLOSED:
        reasons.append("the PBX failed repeatedly; the circuit breaker is open")
    # Every slot held by a call cut off at its deadline: a new query would only wait.
    jammed = limiter.stuck >= limiter.limit
    if jammed:
        reasons.append(
            f"all {limiter.limit} PBX request slots are held by calls the PBX did not finish "
            f"within the {runtime.client.deadline:g} s deadline"
        )
    if runtime.fleet is not None and not runtime.fleet.link.up:
        reasons.append("Redis is unreachable: cache and PBX session are local until it is back")
    # A replica that cannot read the fleet's token makes no PBX call: never ready.
    unusable = runtime.fleet.share.problem if runtime.fleet is not None else None
    if unusable is not None:
        checks["pbxSession"] = "fleet token unreadable"
        reasons.append(unusable)
    if not session.has_token and not reasons:
        reasons.append("not logged in to the PBX yet (the first query logs in)")
    ready = ((session.has_token and not jammed) or store.holds_data) and unusable is None
    rejected = session.credentials_rejected if runtime.fleet is not None else None
    if rejected is not None:
        # In a fleet the other replicas' token may serve this one, yet its own credentials
        # are wrong: not ready, so the operator sees it (the other replicas carry traffic).
        # Alone, a gateway with stale data stays ready (with warnings) rather than none.
        ready = False
        reason = (
            f"{rejected.code}: this replica's PBX credentials were rejected: {rejected.message}"
        )
        reasons = [reason, *(r for r in reasons if r != f"{rejected.code}: {rejected.message}")]
        checks["pbxCredentials"] = "rejected"
    body = {"ready": ready, "checks": checks, "reasons": [] if ready else reasons}
    if ready and reasons:
        body["warnings"] = reasons  # serving stale data: ready, but say why it is stale
    return JSONResponse(body, status_code=200 if ready else 503)
