"""The audit trail: one structured line (logger ``gateway.audit``) per attempted change.

Who (the client identity's name and kind), which room, which settings (by their schema
names) or, for a moderator's action, the operator and the members acted on (``all`` for
everyone), how it ended and the request id that joins it to the request log. Outcomes:
``applied``; ``unknown`` (no answer came back: the PBX may have applied it); ``refused``
(by the PBX or the caller's budget); ``invalid`` (the input broke a rule); ``denied`` (a
scope was missing). Only names, never values: a PIN must not reach a log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from gateway.errors import GatewayError
from gateway.security.identity import Identity

logger = logging.getLogger("gateway.audit")


def audit_change(
    action: str,
    *,
    identity: Identity | None,
    number: str,
    fields: Sequence[str],
    outcome: str,
    request_id: str | None,
    error: GatewayError | None = None,
) -> None:
    """Log one change attempt; ``number`` may be unchecked input, so it is shown safely."""
    _log(action, identity, number, {"changed_fields": list(fields)}, outcome, request_id, error)


def audit_moderation(
    action: str,
    *,
    identity: Identity | None,
    number: str,
    operator: str,
    members: Sequence[str],
    outcome: str,
    request_id: str | None,
    error: GatewayError | None = None,
) -> None:
    """Log one moderator action on a room's participants (``members`` may be ``["all"]``);
    every value may be unchecked input, so each is shown safely."""
    detail = {
        "operator": _safe(operator),
        "members": [m if m == "all" else _safe(m) for m in members[:50]],
    }
    _log(action, identity, number, detail, outcome, request_id, error)


def _safe(value: str) -> str:
    """Digits as they are; anything else quoted and cut short (it may be hostile input)."""
    return value if value.isascii() and value.isdigit() else repr(value[:40])


def _log(
    action: str,
    identity: Identity | None,
    number: str,
    detail: dict[str, Any],
    outcome: str,
    request_id: str | None,
    error: GatewayError | None,
) -> None:
    shown = _safe(number)
    entry: dict[str, Any] = {
        "action": action,
        "outcome": outcome,
        "client": identity.name if identity is not None else None,
        "client_kind": identity.kind if identity is not None else None,
        "number": shown,
        **detail,
        "request_id": request_id,
    }
    if error is not None:
        entry["error_code"] = error.code
        entry["errno"] = getattr(error, "errno", None)
    logger.info("%s %s %s", action, shown, outcome, extra={"fields": entry})
