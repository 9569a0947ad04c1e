"""The benchmark's peers (Apollo Server 5, GraphQL Yoga on Node 24) answer like the gateway.

The same simulated PBX behind all three, real processes on loopback: the peers' bodies
must be the gateway's JSON text for the hot query and for a list with an unknown number
and a duplicate, or their timings would compare different work. Needs ``make bench-peers``
(Node 24 and the peers from npm into bench/peers/node_modules), as ``make test`` does.
"""

from __future__ import annotations

from pathlib import Path

from bench import peers, workloads
from bench.targets import Stack, TargetFactory


def test_bench_peers_answer_the_gateway_bytes(tmp_path: Path) -> None:
    """Apollo and Yoga answer w1's query and a list query with the gateway's JSON text, and
    the PBX saw one login per server and batched calls (one per cold document)."""
    assert peers.missing() is None, peers.missing()
    factory = TargetFactory(tmp_path, Stack("asyncio", "h11"), latency=0.0, jitter=0.0)
    bodies = [
        workloads.single_room(1),
        workloads.body('{ conferences(numbers: ["6402", "6401", "99999", "6402"]) '
                       "{ number hasParticipantPassword prompt mute moderators } }"),
    ]  # fmt: skip
    with factory.simulator(20) as simulator, factory.target("gateway", simulator) as gateway:
        expected = [gateway.post(body) for body in bodies]
        for kind in peers.PEERS:
            simulator.settle()
            with factory.peer(kind, simulator, label="node") as peer:
                for body, ours in zip(bodies, expected, strict=True):
                    theirs = peer.post(body)
                    assert peers.same_answer(theirs, ours) == "bytes", (kind, theirs, ours)
                    assert peer.post(body) == theirs  # the response cache's answer too
                stats = simulator.stats()
            assert stats["logins_succeeded"] == 1
            assert stats["calls"].get("conference/query") == len(bodies)
