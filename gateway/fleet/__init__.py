"""Many workers and replicas as one gateway: state shared through Redis.

With ``GATEWAY_REDIS_URL`` set, every replica shares one PBX session, one cache and one
PBX concurrency cap, so the PBX sees one well-behaved client however many processes run:

- ``link``: the Redis connection, and what happens when Redis goes away (local fallback,
  then rejoin);
- ``session_share``: the fleet's one PBX token (encrypted at rest), its login lock,
  heartbeat turn and the shared failed-login guard;
- ``shared_tokens``: the PBX session's token source in a fleet, built on ``session_share``;
- ``slots``: the fleet-wide PBX concurrency cap (a semaphore of expiring leases);
- ``cache``: the shared conference cache and cross-replica single-flight.
"""
