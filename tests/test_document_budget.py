"""The document budget's refusals are typed: graphql-core's token limit included."""

from __future__ import annotations

import pytest
from graphql import GraphQLSyntaxError, parse

from gateway.schema.document_budget import TooManyTokensError, token_limit_refusal

LIMIT = 50


def syntax_error(text: str) -> GraphQLSyntaxError:
    with pytest.raises(GraphQLSyntaxError) as caught:
        parse(text, max_tokens=LIMIT)
    return caught.value


@pytest.mark.parametrize(
    "text",
    [
        "{ " + "number " * 100 + "}",
        "{ number\n" + "# a comment\n" * 100 + "name }",
        "{ " + "number " * 100,  # unfinished as well: the limit comes first
    ],
    ids=["fields", "comments", "unfinished"],
)
def test_token_limit_refusal_types_graphql_cores_abort(text: str) -> None:
    """graphql-core's token-limit abort becomes a TooManyTokensError with the same message
    and location, coded OPERATION_TOO_LARGE."""
    error = syntax_error(text)
    refused = token_limit_refusal(error, text, LIMIT)
    assert isinstance(refused, TooManyTokensError)
    assert (refused.message, refused.locations) == (error.message, error.locations)
    assert refused.extensions == {"code": "OPERATION_TOO_LARGE"}


@pytest.mark.parametrize(
    "text",
    ["{ { " + "number " * 100 + "}", '{ number "unterminated ' + "x " * 100, "{ number"],
    ids=["grammar-before-limit", "lexer-before-limit", "short"],
)
def test_token_limit_refusal_keeps_other_syntax_errors(text: str) -> None:
    """A syntax error that is not the token limit stays graphql-core's, uncoded."""
    error = syntax_error(text)
    assert token_limit_refusal(error, text, LIMIT) is error
