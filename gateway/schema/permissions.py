"""Scope checks on fields: authorization is decided per request, whatever is cached.

Cached conferences are shared by every client; what a client may *see* of them is checked
here, on every request, from the identity the gate established. A failed check answers
``null`` on that field with a ``FORBIDDEN`` error on that path only. (The PIN fields check
``conferences:pins`` in their resolvers, ``gateway.schema.types``: cheaper per room.)
"""

from __future__ import annotations

from typing import Any, ClassVar

import strawberry
from strawberry.permission import BasePermission

from gateway.error_code import ErrorCode
from gateway.schema.context import gateway_context
from gateway.security.identity import READ


class RequireScope(BasePermission):
    """Allows the field when the caller holds ``scope``."""

    scope: ClassVar[str]
    error_extensions = {"code": ErrorCode.FORBIDDEN}  # noqa: RUF012 (strawberry reads it per class)

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        context = gateway_context(info.context)
        return context is not None and context.identity.has(self.scope)


class CanRead(RequireScope):
    scope = READ
    message = f"the caller lacks the {READ} scope needed to read conferences"
