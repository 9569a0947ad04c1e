"""Who may ask what, and how much: client authentication, scopes, rate limits, limits.

- ``config``: the security settings (``GATEWAY_AUTH`` and friends), read from the environment.
- ``identity``: the caller as the gateway knows it, and the scope names.
- ``api_keys`` / ``jwt_auth``: the two ways a client proves who it is.
- ``gate``: the ASGI gate in front of ``/graphql`` (body size, authentication, request rate).
- ``rate_limit``: token buckets per client identity.
"""
