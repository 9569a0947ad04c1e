"""The audit trail: one structured line (logger ``gateway.audit``) per attempted change.

Who (the client identity's name and kind), which room, which settings (by their schema
names), how it ended and the request id that joins it to the request log. Outcomes:
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
    shown = number if number.isascii() and number.isdigit() else repr(number[:40])
    entry: dict[str, Any] = {
        "action": action,
        "outcome": outcome,
        "client": identity.name if identity is not None else None,
        "client_kind": identity.kind if identity is not None else None,
        "number": shown,
        "changed_fields": list(fields),
        "request_id": request_id,
    }
    if error is not None:
        entry["error_code"] = error.code
        entry["errno"] = getattr(error, "errno", None)
    logger.info("%s %s %s", action, shown, outcome, extra={"fields": entry})
