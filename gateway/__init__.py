"""pbx-gateway: a GraphQL gateway in front of Yeastar S-Series IP PBXs.

The layout, one concept per module:

- ``gateway.simulator``: a faithful Yeastar S-Series PBX (HTTP API v2.0.0) for tests and demos.
- ``gateway.cli``: the ``pbx-gateway`` command and its subcommands.
"""

__version__ = "0.1.0"
