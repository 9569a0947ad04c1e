"""pbx-gateway: a GraphQL gateway in front of Yeastar S-Series IP PBXs.

The layout, one concept per module (the README's "Layout" table says more):

- ``gateway.cli``, ``commands``, ``demo``: the ``pbx-gateway`` command and its subcommands.
- ``gateway.app``, ``graphql_view``, ``graphiql``: the Starlette app, the GraphQL-over-HTTP
  view, the self-hosted GraphiQL page (its files in ``static/`` and ``templates/``).
- ``gateway.schema``: the GraphQL schema; ``gateway.store``: the shared conference cache.
- ``gateway.pbx``: the PBX client and session; ``gateway.fleet``: what replicas share (Redis).
- ``gateway.security``, ``gateway.observability``: authentication and limits; metrics,
  logs and traces.
- ``gateway.settings``, ``gateway.errors``: configuration and the error tree.
- ``gateway.simulator``: a faithful Yeastar S-Series PBX (HTTP API v2.0.0) for tests and demos.
"""

# The release, kept equal to pyproject.toml's [project] version (tests/test_version.py checks);
# --version, /healthz and the gateway_build_info metric report it.
__version__ = "0.1.0"
