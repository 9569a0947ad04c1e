"""Reading an admin call's JSON body: typed fields with one clear error each."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]


def arg(body: Body, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """A typed body field; a missing required one or a wrong type is a ValueError."""
    if name not in body or body[name] is None:
        if default is ...:
            raise ValueError(f"{name!r} is required")
        return default
    value = body[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ValueError(f"{name!r} has the wrong type: {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"{name!r} has the wrong type: {value!r}")
    return value
