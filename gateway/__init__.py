"""pbx-gateway: a GraphQL gateway in front of Yeastar S-Series IP PBXs.

The layout, one concept per module (the README's "Architecture" section draws the layers
that import-linter enforces; its "Layout" table says more):

- ``gateway.cli``, ``commands``, ``demo``, ``doctor``: the ``pbx-gateway`` command, its
  subcommands, and the read-only check of a real PBX.
- ``gateway.app``, ``runtime``: the Starlette app and the typed long-lived objects its
  lifespan builds; ``graphql_view`` and ``gateway.http``: the GraphQL-over-HTTP view
  (negotiation, the response-cache fast path); ``graphiql``: the self-hosted GraphiQL page
  (its files in ``static/`` and ``templates/``); ``serving``, ``http_guard``: uvicorn and
  the connection limits.
- ``gateway.schema``: the GraphQL schema and its policies; ``gateway.store`` (with
  ``fetch_queue``, ``store_entries``, ``shared_tier``): the shared conference cache.
- ``gateway.pbx``: the PBX client and session; ``gateway.fleet``: what replicas share (Redis).
- ``gateway.security``, ``gateway.observability``: authentication and limits; metrics,
  logs and traces.
- ``gateway.settings``, ``gateway.errors``, ``error_code``, ``conference_codec``:
  configuration (every default), the error tree, every error code, a room's wire fields.
- ``gateway.simulator``: a faithful Yeastar S-Series PBX (HTTP API v2.0.0) for tests and demos.
"""

# The release, kept equal to pyproject.toml's [project] version (tests/test_version.py checks);
# --version, /healthz and the gateway_build_info metric report it.
__version__ = "0.1.0"
