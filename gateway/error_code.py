"""Every ``extensions.code`` the gateway answers with, in one enum.

The codes are the wire contract clients branch on (the README's "Error codes" table lists
each with its meaning); naming them here, once, keeps a typo from becoming a new code.
A :class:`~enum.StrEnum`, so a member *is* its string: it goes into JSON, log lines and
metric labels as the code itself. A leaf module: it imports nothing of the gateway.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A stable error code; the value is what clients see."""

    # Raised by the gateway's own errors (gateway.errors).
    INTERNAL_ERROR = "INTERNAL_ERROR"
    CONFIG_ERROR = "CONFIG_ERROR"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    PBX_ERROR = "PBX_ERROR"
    PBX_UNAVAILABLE = "PBX_UNAVAILABLE"
    PBX_BUSY = "PBX_BUSY"
    PBX_AUTH_FAILED = "PBX_AUTH_FAILED"
    PBX_LOCKED_OUT = "PBX_LOCKED_OUT"
    PBX_RATE_LIMITED = "PBX_RATE_LIMITED"
    FEATURE_UNAVAILABLE = "FEATURE_UNAVAILABLE"
    # GraphQL documents and requests.
    UNAUTHENTICATED = "UNAUTHENTICATED"
    OPERATION_TOO_LARGE = "OPERATION_TOO_LARGE"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
    PERSISTED_QUERY_NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
    # HTTP refusals (the view, the security gate, the connection guard).
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    SERVER_BUSY = "SERVER_BUSY"
    # Subscriptions (gateway.subscriptions).
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    SLOW_CONSUMER = "SLOW_CONSUMER"
