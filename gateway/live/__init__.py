"""Live conferences pushed as they change: who is in each room, to subscribers.

- :mod:`gateway.live.contracts`: the two seams, a *source* of room states (the PBX's report
  channel, or a poller where the PBX sends no events) and the *sink* that takes them (the
  feed, or the fleet's bus in front of it);
- the feed, the sources, the poller and the fleet's lease and bus each have a module here.
"""
