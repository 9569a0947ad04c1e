"""The base of the generated client (ariadne-codegen copies this file into
``conference_client/``): one POST per operation, and the answer kept whole.

ariadne-codegen's default base client raises on any GraphQL error and drops
``extensions``. The gateway's answers mean more than that: partial data with errors
beside it, and ``extensions.stale`` when it served its last known data because the PBX
was unreachable. So this one returns ``data`` whenever there is some, keeps the errors
and extensions of the last answer on the client, and raises only when there is no data.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx


class NoData(Exception):
    """The gateway gave no data: unreachable, refused the request, or only errors."""


class GatewayBaseClient:
    """POSTs GraphQL over HTTP to the gateway with httpx."""

    def __init__(
        self,
        url: str = "",
        headers: dict[str, str] | None = None,
        http_client: httpx.Client | None = None,
        timeout: float = 20.0,  # the gateway gives up on the PBX after 15 s by default
    ) -> None:
        self.url = url
        self.http_client = http_client or httpx.Client(headers=headers, timeout=timeout)
        self.errors: list[dict[str, Any]] = []
        """The last answer's GraphQL errors (beside partial data)."""
        self.extensions: dict[str, Any] = {}
        """The last answer's ``extensions`` (e.g. ``stale``)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.http_client.close()

    def execute(
        self,
        query: str,
        operation_name: str | None = None,
        variables: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST one operation; the HTTP answer, whatever its status."""
        body = {"query": query, "operationName": operation_name, "variables": variables or {}}
        headers = {"Accept": "application/graphql-response+json", **kwargs.pop("headers", {})}
        try:
            return self.http_client.post(self.url, json=body, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise NoData(f"cannot reach {self.url}: {exc}") from exc

    def get_data(self, response: httpx.Response) -> dict[str, Any]:
        """``data`` of the answer (errors and extensions kept); NoData when there is none."""
        try:
            answer = response.json()
        except ValueError:
            raise NoData(f"{self.url} answered HTTP {response.status_code} without JSON") from None
        if not isinstance(answer, dict):
            raise NoData(f"{self.url} answered HTTP {response.status_code} with unexpected JSON")
        self.errors = list(answer.get("errors") or [])
        self.extensions = dict(answer.get("extensions") or {})
        data = answer.get("data")
        if not isinstance(data, dict):
            problems = "; ".join(str(error.get("message")) for error in self.errors)
            raise NoData(f"the gateway answered without data: {problems or 'no data'}")
        return data
