"""Persisted queries end to end: Apollo's APQ exchange, the allowlist mode, the file loader.

Requests are built the way Apollo Client's persisted-queries link builds them: the hash in
``extensions.persistedQuery = {"version": 1, "sha256Hash": ...}``, first alone (GET with
``useGETForHashedQueries``), then, after ``PersistedQueryNotFound``, with the document.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from gateway.env import EnvReader
from gateway.errors import ConfigError
from gateway.persisted_queries import load_documents
from gateway.security.config import SecuritySettings, security_from_environ
from gateway.security.identity import ALL_SCOPES
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import ROOM_ANSWER, ROOM_QUERY, anonymous_security, codes

APOLLO_ACCEPT: Final = "application/graphql-response+json,application/json;q=0.9"
ROOM_HASH: Final = hashlib.sha256(ROOM_QUERY.encode()).hexdigest()
OTHER_QUERY: Final = '{ conference(number: "6401") { number } }'
OTHER_HASH: Final = hashlib.sha256(OTHER_QUERY.encode()).hexdigest()


def persisted(sha256: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256}}


async def get_hash(stack: Stack, sha256: str, accept: str = APOLLO_ACCEPT) -> httpx.Response:
    """Apollo's first try: GET with only the hash (and its empty variables)."""
    params = {"extensions": json.dumps(persisted(sha256)), "variables": "{}"}
    return await stack.client.get("/graphql", params=params, headers={"accept": accept})


async def post_with_query(
    stack: Stack, query: str, sha256: str, accept: str = APOLLO_ACCEPT
) -> httpx.Response:
    """Apollo's retry: POST with the document and the hash."""
    body = {"query": query, "variables": {}, "extensions": persisted(sha256)}
    return await stack.client.post("/graphql", json=body, headers={"accept": accept})


def security(**changes: Any) -> SecuritySettings:
    return anonymous_security(ALL_SCOPES, **changes)


# --- APQ -------------------------------------------------------------------------------------


async def test_apq_round_trip_as_apollo_client_does_it(gateway_stack: StackFactory) -> None:
    """Unknown hash: PersistedQueryNotFound; retry with the document: data; from then on the
    hash alone answers, over GET, from the cache."""
    stack = await gateway_stack()
    first = await get_hash(stack, ROOM_HASH)
    assert first.status_code == 400  # a request error, and Accept prefers graphql-response+json
    body = first.json()
    assert body["errors"][0]["message"] == "PersistedQueryNotFound"
    assert codes(body) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert "data" not in body
    assert stack.calls() == 0

    retry = await post_with_query(stack, ROOM_QUERY, ROOM_HASH)
    assert (retry.status_code, retry.json()) == (200, ROOM_ANSWER)
    assert stack.calls() == 1

    again = await get_hash(stack, ROOM_HASH)
    assert (again.status_code, again.json()) == (200, ROOM_ANSWER)
    assert stack.calls() == 1


async def test_apq_not_found_is_200_for_application_json(gateway_stack: StackFactory) -> None:
    """With the legacy media type the same answer is 200, as Apollo Server sends it."""
    stack = await gateway_stack()
    response = await get_hash(stack, ROOM_HASH, accept="*/*")
    assert response.status_code == 200
    assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert response.headers["cache-control"] == "no-store"


async def test_apq_registers_over_get_too(gateway_stack: StackFactory) -> None:
    """A GET with the document and the hash registers it like a POST does."""
    stack = await gateway_stack()
    params = {"query": ROOM_QUERY, "extensions": json.dumps(persisted(ROOM_HASH))}
    response = await stack.client.get("/graphql", params=params)
    assert response.json() == ROOM_ANSWER
    assert (await get_hash(stack, ROOM_HASH)).json() == ROOM_ANSWER


async def test_apq_hash_mismatch_is_refused_and_not_registered(
    gateway_stack: StackFactory,
) -> None:
    """A hash that is not sha256(query): 400 BAD_USER_INPUT with Apollo's message; nothing
    runs and nothing is stored under either hash."""
    stack = await gateway_stack()
    for accept in (APOLLO_ACCEPT, "application/json"):
        response = await post_with_query(stack, ROOM_QUERY, OTHER_HASH, accept)
        assert response.status_code == 400
        body = response.json()
        assert body["errors"][0]["message"] == "provided sha does not match query"
        assert codes(body) == ["BAD_USER_INPUT"]
    assert stack.calls() == 0
    for sha256 in (OTHER_HASH, ROOM_HASH):
        assert codes((await get_hash(stack, sha256)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_apq_uppercase_hash_is_the_same_hash(gateway_stack: StackFactory) -> None:
    """Hex is hex: the hash is compared case-insensitively."""
    stack = await gateway_stack()
    assert (await post_with_query(stack, ROOM_QUERY, ROOM_HASH.upper())).json() == ROOM_ANSWER
    assert (await get_hash(stack, ROOM_HASH)).json() == ROOM_ANSWER


async def test_apq_stores_only_documents_that_validate(gateway_stack: StackFactory) -> None:
    """An invalid document with its right hash fails validation and is not remembered."""
    stack = await gateway_stack()
    invalid = "{ noSuchField }"
    invalid_hash = hashlib.sha256(invalid.encode()).hexdigest()
    response = await post_with_query(stack, invalid, invalid_hash)
    assert codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]
    assert codes((await get_hash(stack, invalid_hash)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ({"persistedQuery": {"version": 2, "sha256Hash": ROOM_HASH}}, "version"),
        ({"persistedQuery": {"version": 1}}, "sha256Hash"),
        ({"persistedQuery": "abc"}, "object"),
    ],
)
async def test_apq_malformed_extension_is_400(
    gateway_stack: StackFactory, extensions: dict[str, Any], message: str
) -> None:
    """An unsupported version, a missing hash or a non-object: 400 BAD_USER_INPUT."""
    stack = await gateway_stack()
    response = await stack.client.post(
        "/graphql", json={"query": ROOM_QUERY, "extensions": extensions}
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_USER_INPUT"]
    assert message in response.json()["errors"][0]["message"]


async def test_apq_cache_is_bounded_lru(gateway_stack: StackFactory) -> None:
    """With room for one document, registering a second forgets the first."""
    stack = await gateway_stack(security=security(apq_max_entries=1))
    await post_with_query(stack, ROOM_QUERY, ROOM_HASH)
    await post_with_query(stack, OTHER_QUERY, OTHER_HASH)
    assert codes((await get_hash(stack, ROOM_HASH)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert "errors" not in (await get_hash(stack, OTHER_HASH)).json()


async def test_apq_documents_expire_after_their_ttl(gateway_stack: StackFactory) -> None:
    """A registered document is forgotten GATEWAY_APQ_TTL seconds after it was sent."""
    stack = await gateway_stack(security=security(apq_ttl=600))
    await post_with_query(stack, ROOM_QUERY, ROOM_HASH)
    stack.clock.advance(599)
    assert (await get_hash(stack, ROOM_HASH)).json() == ROOM_ANSWER
    stack.clock.advance(2)
    assert codes((await get_hash(stack, ROOM_HASH)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_apq_off_answers_not_supported(gateway_stack: StackFactory) -> None:
    """GATEWAY_APQ_MAX_ENTRIES=0: PersistedQueryNotSupported, which tells Apollo Client to
    stop sending hashes; documents sent in full still run."""
    stack = await gateway_stack(security=security(apq_max_entries=0))
    body = (await get_hash(stack, ROOM_HASH)).json()
    assert body["errors"][0]["message"] == "PersistedQueryNotSupported"
    assert codes(body) == ["PERSISTED_QUERY_NOT_SUPPORTED"]
    assert (await post_with_query(stack, ROOM_QUERY, ROOM_HASH)).json() == ROOM_ANSWER
    assert codes((await get_hash(stack, ROOM_HASH)).json()) == ["PERSISTED_QUERY_NOT_SUPPORTED"]


# --- allowlist -------------------------------------------------------------------------------


def manifest(tmp_path: Path, *documents: str) -> Path:
    """An Apollo persisted-query manifest holding ``documents``."""
    operations = [
        {
            "id": hashlib.sha256(body.encode()).hexdigest(),
            "body": body,
            "name": f"Op{index}",
            "type": "query",
        }
        for index, body in enumerate(documents)
    ]
    path = tmp_path / "persisted-query-manifest.json"
    document = {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


async def allowlist_stack(gateway_stack: StackFactory, tmp_path: Path) -> Stack:
    """A gateway with GATEWAY_PERSISTED_ONLY and a manifest registering ROOM_QUERY."""
    documents = load_documents(manifest(tmp_path, ROOM_QUERY))
    return await gateway_stack(
        security=security(persisted_only=True, persisted_documents=documents)
    )


async def test_allowlist_runs_registered_documents(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A registered document runs by hash alone (GET), in full with its hash, or in full."""
    stack = await allowlist_stack(gateway_stack, tmp_path)
    assert (await get_hash(stack, ROOM_HASH)).json() == ROOM_ANSWER
    assert (await post_with_query(stack, ROOM_QUERY, ROOM_HASH)).json() == ROOM_ANSWER
    assert (await stack.client.post("/graphql", json={"query": ROOM_QUERY})).json() == ROOM_ANSWER


@pytest.mark.parametrize("accept", [APOLLO_ACCEPT, "application/json"])
async def test_allowlist_refuses_other_documents_with_400(
    gateway_stack: StackFactory, tmp_path: Path, accept: str
) -> None:
    """A document not on the list, raw or with its hash: 400 PERSISTED_QUERY_NOT_ALLOWED, and
    the PBX is never asked."""
    stack = await allowlist_stack(gateway_stack, tmp_path)
    raw = await stack.client.post(
        "/graphql", json={"query": OTHER_QUERY}, headers={"accept": accept}
    )
    hashed = await post_with_query(stack, OTHER_QUERY, OTHER_HASH, accept)
    for response in (raw, hashed):
        assert response.status_code == 400
        assert codes(response.json()) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    assert stack.calls() == 0


async def test_allowlist_disables_apq_registration(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """Sending an unlisted document with its hash teaches the gateway nothing."""
    stack = await allowlist_stack(gateway_stack, tmp_path)
    await post_with_query(stack, OTHER_QUERY, OTHER_HASH)
    assert codes((await get_hash(stack, OTHER_HASH)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]


# --- the file and the settings ----------------------------------------------------------------


def test_load_documents_reads_a_plain_map(tmp_path: Path) -> None:
    """{sha256: document} is the simplest form; upper-case ids are normalised."""
    path = tmp_path / "queries.json"
    path.write_text(json.dumps({ROOM_HASH.upper(): ROOM_QUERY}), encoding="utf-8")
    assert load_documents(path) == {ROOM_HASH: ROOM_QUERY}


def test_load_documents_reads_an_apollo_manifest(tmp_path: Path) -> None:
    """Apollo's manifest format, version 1."""
    path = manifest(tmp_path, ROOM_QUERY, OTHER_QUERY)
    assert load_documents(path) == {ROOM_HASH: ROOM_QUERY, OTHER_HASH: OTHER_QUERY}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not readable JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"0" * 64: ROOM_QUERY}), "is not the SHA-256"),
        (json.dumps({hashlib.sha256(b"{").hexdigest(): "{"}), "does not parse"),
        (json.dumps({ROOM_HASH: 7}), "must be a string"),
        (json.dumps({"format": "apollo-persisted-query-manifest", "version": 2}), "version 1"),
        (json.dumps({"format": "apollo-persisted-query-manifest", "version": 1}), "operations"),
    ],
)
def test_load_documents_refuses_bad_files_in_one_line(
    tmp_path: Path, content: str, fragment: str
) -> None:
    """Anything else stops start-up with one line naming the variable."""
    path = tmp_path / "queries.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_documents(path)
    assert info.value.message.startswith("GATEWAY_PERSISTED_QUERIES_FILE")
    assert fragment in info.value.message
    assert "\n" not in info.value.message


def test_settings_read_the_persisted_query_variables(tmp_path: Path) -> None:
    """The four variables land in SecuritySettings; defaults leave APQ on, allowlist off."""
    defaults = security_from_environ(EnvReader({"GATEWAY_AUTH": "none"}))
    assert (defaults.persisted_only, dict(defaults.persisted_documents)) == (False, {})
    assert (defaults.apq_max_entries, defaults.apq_ttl) == (1000, 86_400.0)
    loaded = security_from_environ(
        EnvReader(
            {
                "GATEWAY_AUTH": "none",
                "GATEWAY_PERSISTED_ONLY": "true",
                "GATEWAY_PERSISTED_QUERIES_FILE": str(manifest(tmp_path, ROOM_QUERY)),
                "GATEWAY_APQ_MAX_ENTRIES": "0",
                "GATEWAY_APQ_TTL": "60",
            }
        )
    )
    assert (
        loaded.persisted_only,
        dict(loaded.persisted_documents),
        loaded.apq_max_entries,
        loaded.apq_ttl,
    ) == (True, {ROOM_HASH: ROOM_QUERY}, 0, 60.0)


def test_settings_persisted_only_needs_the_file() -> None:
    """GATEWAY_PERSISTED_ONLY without GATEWAY_PERSISTED_QUERIES_FILE is a start-up error."""
    with pytest.raises(ConfigError) as info:
        security_from_environ(EnvReader({"GATEWAY_AUTH": "none", "GATEWAY_PERSISTED_ONLY": "true"}))
    assert "GATEWAY_PERSISTED_QUERIES_FILE" in info.value.message
