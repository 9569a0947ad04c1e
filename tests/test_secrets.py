"""Secrets never print: Secret's every rendering, redact(), and httpx's own request log."""

from __future__ import annotations

import logging

import pytest

from gateway.secrets import RedactingFilter, Secret, install_redaction, redact
from tests.pbx_fakes import FakePbx, pbx_client

VALUE = "hunter2-very-secret"


def test_secret_never_shows_its_value() -> None:
    """repr, str, format, f-strings and %-formatting all hide the value."""
    secret = Secret(VALUE)
    renderings = [
        repr(secret),
        str(secret),
        format(secret),
        format(secret, ">40"),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        f"{secret:s}",
        "%s" % secret,  # noqa: UP031 (the old style is what logging uses)
        "%r" % secret,  # noqa: UP031
        "{}".format(secret),  # noqa: UP032
        repr([secret]),
        repr({"password": secret}),
    ]
    for text in renderings:
        assert VALUE not in text
        assert "*" in text


def test_secret_reveal_gives_value() -> None:
    """reveal() is the only way to the value."""
    assert Secret(VALUE).reveal() == VALUE


def test_secret_equality_compares_values() -> None:
    """Two Secrets are equal when their values are; a Secret never equals a plain string."""
    assert Secret(VALUE) == Secret(VALUE)
    assert Secret(VALUE) != Secret("other")
    assert Secret(VALUE) != VALUE
    assert len({Secret(VALUE), Secret(VALUE)}) == 1


def test_secret_has_no_instance_dict() -> None:
    """A Secret has no __dict__ for vars() or a debugger's attribute dump to show."""
    with pytest.raises(TypeError):
        vars(Secret(VALUE))


def test_secret_in_logged_arguments_stays_hidden(caplog: pytest.LogCaptureFixture) -> None:
    """A Secret passed as a logging argument is rendered hidden."""
    with caplog.at_level(logging.DEBUG, logger="tests.secrets"):
        logging.getLogger("tests.secrets").debug("password=%s (%r)", Secret(VALUE), Secret(VALUE))
    assert VALUE not in caplog.text
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "POST http://pbx/api/v2.0.0/heartbeat?token=abc123",
            "POST http://pbx/api/v2.0.0/heartbeat?token=<redacted>",
        ),
        ("/x?a=1&token=abc&b=2", "/x?a=1&token=<redacted>&b=2"),
        ('url "http://p/q?TOKEN=abc" done', 'url "http://p/q?TOKEN=<redacted>" done'),
        ("?token=a ?token=b", "?token=<redacted> ?token=<redacted>"),
        ("url='http://p/?token=abc'", "url='http://p/?token=<redacted>'"),
        ("no secrets here", "no secrets here"),
    ],
)
def test_redact_scrubs_token_values(text: str, expected: str) -> None:
    """redact() replaces every token= query value and leaves the rest alone."""
    assert redact(text) == expected


def test_redacting_filter_rewrites_formatted_message() -> None:
    """The filter rewrites a record whose arguments carry a token, and keeps the record."""
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("POST", "/x?token=abc"), None
    )
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "HTTP Request: POST /x?token=<redacted>"


def test_install_redaction_adds_one_filter_per_logger() -> None:
    """Installing twice leaves exactly one RedactingFilter on the logger."""
    name = "tests.secrets.install"
    install_redaction(name)
    install_redaction(name)
    filters = logging.getLogger(name).filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1


async def test_httpx_request_log_line_has_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """httpx's own INFO "HTTP Request: POST ...?token=..." line is scrubbed by build_http_client."""
    pbx = FakePbx()
    token = "f" * 32
    pbx.tokens.add(token)
    with caplog.at_level(logging.INFO, logger="httpx"):
        async with pbx_client(pbx.transport()) as client:
            await client.call("heartbeat", {}, token=token)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 1
    assert lines[0].startswith("HTTP Request: POST")
    assert "heartbeat?token=<redacted>" in lines[0]
    assert token not in caplog.text
    assert pbx.seen[0].token == token  # the PBX still got it
