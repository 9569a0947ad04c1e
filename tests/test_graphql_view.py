"""The view's one private strawberry hook: fails loudly when an upgrade changes it.

``gateway/graphql_view.py`` overrides strawberry's private ``_validate_batch_request``
(see ``STRAWBERRY_PRIVATE_HOOK`` there); pyproject.toml caps strawberry at the versions
checked. These tests read the installed strawberry, so ``make lock UPGRADE=1`` past the
cap, or a strawberry that renamed, moved or stopped calling the hook, fails here, by
name, rather than as a batch answered with strawberry's words (or a 500) elsewhere.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.http.base import BaseView

from gateway.graphql_view import STRAWBERRY_PRIVATE_HOOK, GatewayGraphQL

ROOT = Path(__file__).resolve().parent.parent


def test_graphql_view_private_hook_keeps_its_signature() -> None:
    """strawberry's BaseView still defines the hook the view overrides, taking exactly
    (self, request_data, protocol), and the view overrides that very name."""
    hook = getattr(BaseView, STRAWBERRY_PRIVATE_HOOK, None)
    assert callable(hook), f"strawberry no longer has BaseView.{STRAWBERRY_PRIVATE_HOOK}"
    parameters = list(inspect.signature(hook).parameters)
    assert parameters == ["self", "request_data", "protocol"], parameters
    assert STRAWBERRY_PRIVATE_HOOK in vars(GatewayGraphQL)
    ours = list(inspect.signature(vars(GatewayGraphQL)[STRAWBERRY_PRIVATE_HOOK]).parameters)
    assert ours == parameters


def test_graphql_view_private_hook_is_still_called_on_a_batch() -> None:
    """strawberry's async view still calls the hook from parse_http_body, before it reads
    the batch's items (where our checks must come first)."""
    source = inspect.getsource(AsyncBaseHTTPView.parse_http_body)
    call = source.find(f"self.{STRAWBERRY_PRIVATE_HOOK}(")
    assert call != -1, "parse_http_body no longer calls the private hook"
    assert call < source.find("item.get("), "the hook now runs after the items are read"


def test_graphql_view_strawberry_is_within_the_pinned_range() -> None:
    """The installed strawberry is inside pyproject.toml's range, whose cap is the newest
    version the hook was checked on."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    (pinned,) = (
        Requirement(d) for d in dependencies if Requirement(d).name == "strawberry-graphql"
    )
    assert any(spec.operator == "<" for spec in pinned.specifier), pinned
    installed = importlib.metadata.version("strawberry-graphql")
    assert pinned.specifier.contains(installed), (installed, str(pinned.specifier))
