"""Live conferences pushed as they change: who is in each room, to subscribers.

- :mod:`gateway.live.contracts`: the two seams, a *source* of room states (the PBX's report
  channel, or a poller where the PBX sends no events) and the *sink* that takes them (the
  feed, or the fleet's bus in front of it);
- the sources: :mod:`~gateway.live.event_source` (the TCP report channel),
  :mod:`~gateway.live.push_receiver` (HTTP push), :mod:`~gateway.live.poller`; which one
  runs, :mod:`~gateway.live.supervisor`, with :mod:`~gateway.live.reconciliation` checking
  that events tell everything; the subscribers' :mod:`~gateway.live.feed`;
- in a fleet (Redis): :mod:`~gateway.live.lease` (one replica runs the source),
  :mod:`~gateway.live.bus` (its states to every replica's feed, with
  :mod:`~gateway.live.fleet_watch` for the rooms the fleet watches), assembled by
  :mod:`~gateway.live.fleet_run`.
"""
