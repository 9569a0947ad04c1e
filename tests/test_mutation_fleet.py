"""``updateConference`` on one replica of a fleet: every replica then answers the new room."""

from __future__ import annotations

from typing import Any

import httpx

from tests.test_fleet import fleet_factory, redis_process

__all__ = ["fleet_factory", "redis_process"]  # the fixtures, imported so pytest finds them

ROOM = {"query": '{ conference(number: "6403") { name } }'}
RENAME = {
    "query": 'mutation { updateConference(input: {number: "6403", name: "Fleet-wide"}) '
    "{ conference { name } } }"
}


async def test_mutation_on_one_replica_is_seen_by_every_replica(fleet_factory: Any) -> None:
    """A room cached by three replicas (and Redis), renamed through A: B and C answer the
    new name at once, and the PBX saw one update."""
    fleet = fleet_factory(GATEWAY_ANONYMOUS_SCOPES="conferences:read conferences:write")
    a, b, c = fleet.replicas
    async with httpx.AsyncClient(timeout=30) as client:
        before = [(await client.post(f"{r.url}/graphql", json=ROOM)).json() for r in (a, b, c)]
        assert {r["data"]["conference"]["name"] for r in before} == {"Support Bridge"}
        renamed = (await client.post(f"{a.url}/graphql", json=RENAME)).json()
        assert renamed == {"data": {"updateConference": {"conference": {"name": "Fleet-wide"}}}}
        after = [(await client.post(f"{r.url}/graphql", json=ROOM)).json() for r in (b, c, a)]
    assert [r["data"]["conference"]["name"] for r in after] == ["Fleet-wide"] * 3
    assert fleet.calls("conference/update") == 1
