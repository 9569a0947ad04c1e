"""GraphQL subscriptions' transports: what carries a subscription to its client.

- :mod:`~gateway.subscriptions.slots`: how many subscriptions one caller holds on this
  process, over every transport (``GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_IDENTITY``);
- :mod:`~gateway.subscriptions.errors`: the coded errors a stream ends or answers with
  (``TOO_MANY_SUBSCRIPTIONS``, ``SLOW_CONSUMER``, and the HTTP view's codes for the rest);
- :mod:`~gateway.subscriptions.websocket`: ``graphql-transport-ws``, authenticated in its
  ``connection_init``, with per-connection limits and keep-alive pings;
- :mod:`~gateway.subscriptions.multipart`: the multipart subscription protocol Apollo
  Client and urql speak over one HTTP response, through the same gate as queries.

:mod:`gateway.graphql_view` wires them into strawberry's view; the feed they stream from
is :mod:`gateway.live.feed`.
"""
