"""The errno table (every code on the S-Series v2 error page, 10006, 10110) and the PBX's
``errordata`` hint: passed on in ``extensions``, sanitized."""

from __future__ import annotations

import httpx
import pytest

from gateway.errors import PbxApiError, PbxAuthError
from gateway.pbx import errnos
from gateway.pbx.errordata import MAX_LENGTH, REDACTED, request_secrets, sanitize_errordata
from tests.gateway_stack import StackFactory
from tests.mutation_helpers import UPDATE_NO_PINS, error_of, update
from tests.pbx_fakes import pbx_client

S_SERIES_V2_PAGE = [
    *(str(code) for code in range(10002, 10034)),
    *(str(code) for code in range(20000, 20011)),
    "30001",
    "30003",
]
TOKEN = "0123456789abcdef0123456789abcdef"
MD5 = "fedcba9876543210fedcba9876543210"


def test_errnos_table_holds_the_whole_error_page_plus_10110() -> None:
    """Every code on the S-Series v2 error page, and 10110 from its change log, is documented
    (10006 is on the page); nothing else is."""
    assert {*S_SERIES_V2_PAGE, "10110"} == errnos.DOCUMENTED


@pytest.mark.parametrize("errno", [*S_SERIES_V2_PAGE, "10110"])
def test_errnos_each_has_a_meaning_and_advice(errno: str) -> None:
    """Each documented code has its meaning (not "undocumented") and says what to do."""
    assert "undocumented" not in errnos.errno_meaning(errno)
    advice = errnos.errno_advice(errno)
    assert len(advice) > 15
    assert advice != errnos.errno_advice("39999")


@pytest.mark.parametrize(
    ("errno", "meaning", "advice"),
    [
        ("10006", "extension does not exist", "extension numbers that exist"),
        ("10110", "conference number does not exist", "check the number"),
        ("10003", "unsupported API request", "30.13.0.30"),
        ("10025", "applied too often", "send the change again"),
        ("20007", "request data blank", "gateway bug"),
    ],
)
async def test_errnos_message_says_what_happened_and_what_to_do(
    errno: str, meaning: str, advice: str
) -> None:
    """A refusal's message carries the errno, its meaning and the advice."""
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"status": "Failed", "errno": errno})
    )
    async with pbx_client(transport) as client:
        with pytest.raises(PbxApiError) as info:
            await client.call("conference/update", {"number": "6400"}, token=TOKEN)
    assert f"errno {errno}" in info.value.message
    assert meaning in info.value.message
    assert advice in info.value.message


def test_errnos_undocumented_code_is_named_with_generic_advice() -> None:
    """A code the page does not list is named as undocumented and still gets advice."""
    assert errnos.errno_meaning("10039") == "undocumented errno 10039"
    assert "does not list" in errnos.errno_advice("10039")


# --- errordata -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("name", "name"),
        (["name", "moderators"], "name,moderators"),
        ({"field": "name", "why": "bad"}, '{"field":"name","why":"bad"}'),
        (10004, "10004"),
        ("line one\n\tline\x00two\u202e", "line one line two"),
        ("caf\u00e9", "caf"),
        (None, None),
        ("", None),
        ([], None),
        ("\n\x01", None),
    ],
)
def test_errordata_becomes_one_printable_line(raw: object, expected: str | None) -> None:
    """Any shape becomes one line of printable ASCII; nothing to show is None."""
    assert sanitize_errordata(raw) == expected


def test_errordata_is_bounded() -> None:
    """A huge hint is cut to MAX_LENGTH characters, marked with an ellipsis."""
    text = sanitize_errordata("x" * 100_000)
    assert text is not None
    assert len(text) == MAX_LENGTH
    assert text.endswith("...")


def test_errordata_redacts_token_password_and_hex_runs() -> None:
    """The request's token and password-like values, and any long hex run, never pass."""
    body = {"number": "6400", "participantepassword": "13579", "password": MD5}
    secrets = request_secrets(TOKEN, body)
    assert set(secrets) == {TOKEN, "13579", MD5}
    raw = f"token={TOKEN} pin=13579 md5={MD5.upper()} other=a1b2c3d4e5f6a7b8c9d0"
    text = sanitize_errordata(raw, secrets=secrets)
    assert text == f"token={REDACTED} pin={REDACTED} md5={REDACTED} other={REDACTED}"


async def test_errordata_travels_in_extensions_without_the_token() -> None:
    """A Failed answer's errordata is on the error's extensions, sanitized (token gone)."""
    answer = {"status": "Failed", "errno": "10004", "errordata": [f"token {TOKEN}", "name"]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    async with pbx_client(transport) as client:
        with pytest.raises(PbxApiError) as info:
            await client.call("conference/query", {"number": "6400"}, token=TOKEN)
    assert info.value.extensions == {
        "code": "PBX_ERROR",
        "errno": "10004",
        "errordata": f"token {REDACTED},name",
    }
    assert TOKEN not in repr(info.value.extensions) + info.value.message


async def test_errordata_on_a_login_never_echoes_the_password() -> None:
    """A rejected login's errordata with the password's MD5 in it comes back redacted."""
    answer = {"status": "Failed", "errno": "30003", "errordata": f"bad password {MD5}"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    async with pbx_client(transport) as client:
        with pytest.raises(PbxAuthError) as info:
            await client.call("login", {"username": "api", "password": MD5})
    assert info.value.errordata == f"bad password {REDACTED}"


async def test_errordata_reaches_the_graphql_error(gateway_stack: StackFactory) -> None:
    """End to end: the PBX refuses a change with errordata naming the field; the GraphQL
    error carries it in extensions.errordata next to code and errno."""
    stack = await gateway_stack()
    stack.pbx.fail_next(1, "10004", "conference/update", errordata="name")
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Refused")
    error = error_of(result)
    assert error["extensions"] == {"code": "PBX_ERROR", "errno": "10004", "errordata": "name"}
    assert "a required parameter is blank" in error["message"]
