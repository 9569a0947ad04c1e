"""What the gateway shows browsers and strangers: CORS, introspection, the GraphiQL page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import (
    ROOM_ANSWER,
    ROOM_QUERY,
    anonymous_security,
    api_key_security,
    codes,
    refusal,
    write_keys,
)

WALLBOARD = "https://wallboard.example"
STRANGER = "https://evil.example"
SCHEMA_QUERY = "{ __schema { types { name } } }"


async def cors_stack(gateway_stack: StackFactory, **security: Any) -> Stack:
    return await gateway_stack(
        security=anonymous_security([READ], cors_origins=(WALLBOARD,), **security)
    )


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type, x-api-key",
    }


# --- CORS ----------------------------------------------------------------------------------


async def test_cors_preflight_from_allowed_origin_is_answered(gateway_stack: StackFactory) -> None:
    """A preflight from the allowed origin: 200, that exact origin, no credentials."""
    stack = await cors_stack(gateway_stack)
    response = await stack.client.options("/graphql", headers=preflight(WALLBOARD))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == WALLBOARD
    assert "access-control-allow-credentials" not in response.headers
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()


async def test_cors_preflight_from_other_origin_is_refused(gateway_stack: StackFactory) -> None:
    """A preflight from an origin not listed gets no allow-origin header (400)."""
    stack = await cors_stack(gateway_stack)
    response = await stack.client.options("/graphql", headers=preflight(STRANGER))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert stack.calls() == 0


async def test_cors_preflight_for_other_methods_is_refused(gateway_stack: StackFactory) -> None:
    """Only GET and POST are offered: a preflight for DELETE is refused."""
    stack = await cors_stack(gateway_stack)
    response = await stack.client.options("/graphql", headers=preflight(WALLBOARD, "DELETE"))
    assert response.status_code == 400


async def test_cors_simple_post_from_other_origin_gets_no_allow_origin(
    gateway_stack: StackFactory,
) -> None:
    """A POST from a refused origin carries no allow-origin, so its browser hides the answer."""
    stack = await cors_stack(gateway_stack)
    response = await stack.client.post(
        "/graphql", json={"query": ROOM_QUERY}, headers={"Origin": STRANGER}
    )
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_simple_post_from_allowed_origin_gets_it_back(
    gateway_stack: StackFactory,
) -> None:
    """A POST from the allowed origin is answered with that origin and no credentials."""
    stack = await cors_stack(gateway_stack)
    response = await stack.client.post(
        "/graphql", json={"query": ROOM_QUERY}, headers={"Origin": WALLBOARD}
    )
    assert response.json() == ROOM_ANSWER
    assert response.headers["access-control-allow-origin"] == WALLBOARD
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_off_by_default(gateway_stack: StackFactory) -> None:
    """Without GATEWAY_CORS_ORIGINS no origin is ever allowed."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    pre = await stack.client.options("/graphql", headers=preflight(WALLBOARD))
    post = await stack.client.post(
        "/graphql", json={"query": ROOM_QUERY}, headers={"Origin": WALLBOARD}
    )
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-origin" not in post.headers


async def test_cors_preflight_needs_no_credentials_but_the_request_does(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """In api-key mode the browser's preflight passes without a key; the POST still needs one
    (and its 401 carries the origin, so the page can read why)."""
    stored, _ = write_keys(tmp_path, {"wallboard": [READ]})
    security = api_key_security(stored, cors_origins=(WALLBOARD,))
    stack = await gateway_stack(security=security)
    pre = await stack.client.options("/graphql", headers=preflight(WALLBOARD))
    assert pre.status_code == 200
    post = await stack.client.post(
        "/graphql", json={"query": ROOM_QUERY}, headers={"Origin": WALLBOARD}
    )
    refusal(post, 401, "UNAUTHENTICATED")
    assert post.headers["access-control-allow-origin"] == WALLBOARD


# --- introspection -------------------------------------------------------------------------


async def test_introspection_off_refuses_schema_queries(gateway_stack: StackFactory) -> None:
    """GATEWAY_INTROSPECTION off: __schema and __type are refused with a code, no data."""
    stack = await gateway_stack(security=anonymous_security([READ]), login_at_start=False)
    for document in (SCHEMA_QUERY, '{ __type(name: "Conference") { name } }'):
        body = await stack.graphql(document)
        assert body.get("data") is None
        assert codes(body) and set(codes(body)) <= {"GRAPHQL_VALIDATION_FAILED"}
        assert "Conference" not in str(body["errors"])
    assert dict(stack.pbx.stats.calls) == {}


async def test_introspection_off_still_answers_typename(gateway_stack: StackFactory) -> None:
    """__typename is not introspection of the schema; clients (Apollo) rely on it."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    assert await stack.graphql("{ __typename }") == {"data": {"__typename": "Query"}}


async def test_introspection_on_answers_schema_queries(gateway_stack: StackFactory) -> None:
    """GATEWAY_INTROSPECTION on: the schema's types are listed."""
    stack = await gateway_stack(security=anonymous_security([READ], introspection=True))
    body = await stack.graphql(SCHEMA_QUERY)
    assert "errors" not in body
    assert {"name": "Conference"} in body["data"]["__schema"]["types"]


# --- GraphiQL ------------------------------------------------------------------------------

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_graphiql_off_serves_no_ide(gateway_stack: StackFactory) -> None:
    """GATEWAY_GRAPHIQL off: a browser's GET /graphql gets a coded JSON refusal, no page."""
    stack = await gateway_stack(security=anonymous_security([READ]))
    response = await stack.client.get("/graphql", headers=BROWSER)
    assert response.status_code == 404
    assert "json" in response.headers["content-type"]
    assert "<html" not in response.text.lower()
    assert codes(response.json())


async def test_graphiql_on_serves_the_ide(gateway_stack: StackFactory) -> None:
    """GATEWAY_GRAPHIQL on: a browser's GET /graphql gets the GraphiQL page."""
    stack = await gateway_stack(security=anonymous_security([READ], graphiql=True))
    response = await stack.client.get("/graphql", headers=BROWSER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_graphiql_page_needs_no_key_but_its_queries_do(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """In api-key mode the IDE page (no data) loads without a key; a query sent by GET
    without one is 401, and with one is answered."""
    stored, plain = write_keys(tmp_path, {"developer": [READ]})
    stack = await gateway_stack(security=api_key_security(stored, graphiql=True))
    page = await stack.client.get("/graphql", headers=BROWSER)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    without = await stack.client.get("/graphql", params={"query": ROOM_QUERY})
    refusal(without, 401, "UNAUTHENTICATED")
    with_key = await stack.client.get(
        "/graphql", params={"query": ROOM_QUERY}, headers={"X-API-Key": plain["developer"]}
    )
    assert with_key.json() == ROOM_ANSWER
