"""The GraphQL endpoint's HTTP side, one concern per module.

:mod:`~gateway.http.negotiation` holds the GraphQL-over-HTTP rules and their coded
refusals, :mod:`~gateway.http.fast_path` the response cache's answer before any GraphQL
work; :mod:`gateway.graphql_view` is the thin strawberry view that puts them in order.
"""
