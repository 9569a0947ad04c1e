"""Conference decoding quirks and ``conference/query``'s matching, filtering and fallback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.errors import (
    PbxApiError,
    PbxAuthError,
    PbxProtocolError,
    PbxTokenError,
    PbxTransientError,
    PbxUnavailableError,
)
from gateway.pbx.conference_query import query_conferences
from gateway.pbx.conferences import Conference, Prompt, decode_conference
from tests.pbx_fakes import FakePbx, conference, failed, ok, pbx_session

ENDPOINT = "conference/query"


def decode(**overrides: Any) -> Conference:
    return decode_conference(conference("6400", **overrides), endpoint=ENDPOINT)


# --- decode_conference ---------------------------------------------------------------------


def test_decode_conference_reads_every_documented_field() -> None:
    """A full S-Series ConferenceInfo becomes a typed Conference."""
    raw = conference(
        "6401",
        name="Sales weekly",
        participantepassword="1234",
        moderatorpassword="*99",
        waitformoderator="yes",
        allowinvite="no",
        moderators="4000",
        musiconhold="yes",
        mute="yes",
        prompt="exten",
    )
    expected = Conference(
        number="6401",
        name="Sales weekly",
        participant_password="1234",
        moderator_password="*99",
        wait_for_moderator=True,
        allow_invite=False,
        moderators=("4000",),
        music_on_hold=True,
        mute=True,
        prompt=Prompt.EXTEN,
    )
    assert decode_conference(raw, endpoint=ENDPOINT) == expected


@pytest.mark.parametrize(
    ("moderators", "expected"),
    [
        ("", ()),
        ("4000", ("4000",)),
        ("4000,4001", ("4000", "4001")),
        (4000, ("4000",)),
        (" 4000 , 4001 ", ("4000", "4001")),
        ("4000,,4001,", ("4000", "4001")),
        (None, ()),
        (["4000", 4001], ("4000", "4001")),
    ],
    ids=["empty", "one", "comma-list", "int", "padded", "empty-items", "null", "list"],
)
def test_decode_conference_moderators_in_every_shape(
    moderators: object, expected: tuple[str, ...]
) -> None:
    """moderators "", "4000", "4000,4001", 4000 and padded lists all become extension tuples."""
    assert decode(moderators=moderators).moderators == expected


def test_decode_conference_moderators_absent_is_empty() -> None:
    """A ConferenceInfo without moderators has none."""
    raw = conference("6400")
    del raw["moderators"]
    assert decode_conference(raw, endpoint=ENDPOINT).moderators == ()


def test_decode_conference_k2_without_mute_and_prompt_gives_none() -> None:
    """K2 models omit mute and prompt: both decode to None (not reported), not an error."""
    raw = conference("6400")
    del raw["mute"]
    del raw["prompt"]
    decoded = decode_conference(raw, endpoint=ENDPOINT)
    assert decoded.mute is None
    assert decoded.prompt is None


def test_decode_conference_ignores_unknown_keys() -> None:
    """Unknown extra keys are ignored."""
    assert decode(futurefield="x", another={"nested": 1}) == decode()


def test_decode_conference_empty_pins_are_none() -> None:
    """An unset PIN ("") is None, not an empty string."""
    decoded = decode(participantepassword="", moderatorpassword="")
    assert decoded.participant_password is None
    assert decoded.moderator_password is None


def test_decode_conference_absent_pins_are_none() -> None:
    """PIN fields missing altogether are None too."""
    raw = conference("6400")
    del raw["participantepassword"]
    del raw["moderatorpassword"]
    decoded = decode_conference(raw, endpoint=ENDPOINT)
    assert (decoded.participant_password, decoded.moderator_password) == (None, None)


def test_decode_conference_pin_of_zeros_is_kept() -> None:
    """A PIN "0000" is a PIN (not confused with falsy)."""
    assert decode(participantepassword="0000").participant_password == "0000"


@pytest.mark.parametrize("field", ["waitformoderator", "allowinvite", "musiconhold", "mute"])
@pytest.mark.parametrize("value", ["maybe", "", 2, ["yes"], "y"])
def test_decode_conference_bad_yes_no_raises_protocol_error(field: str, value: object) -> None:
    """A yes/no field with anything else is a PbxProtocolError naming the room and the field."""
    with pytest.raises(PbxProtocolError) as info:
        decode(**{field: value})
    assert "6400" in info.value.message
    assert field in info.value.message
    assert info.value.endpoint == ENDPOINT


@pytest.mark.parametrize("field", ["waitformoderator", "allowinvite", "musiconhold"])
def test_decode_conference_missing_required_flag_raises_protocol_error(field: str) -> None:
    """A documented yes/no field (other than K2's mute) missing is a PbxProtocolError."""
    raw = conference("6400")
    del raw[field]
    with pytest.raises(PbxProtocolError):
        decode_conference(raw, endpoint=ENDPOINT)


@pytest.mark.parametrize(
    ("value", "expected"), [("YES", True), (" no ", False), ("Yes", True), ("NO", False)]
)
def test_decode_conference_yes_no_is_case_and_space_tolerant(value: str, expected: bool) -> None:
    """yes/no is read without regard to case or surrounding spaces."""
    assert decode(allowinvite=value).allow_invite is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("default", Prompt.DEFAULT),
        ("exten", Prompt.EXTEN),
        ("none", Prompt.NONE),
        ("DEFAULT", Prompt.DEFAULT),
        ("beep", None),
        ("", None),
        (3, None),
    ],
)
def test_decode_conference_prompt_values(value: object, expected: Prompt | None) -> None:
    """Known prompts decode to Prompt; an unknown one is None rather than an error."""
    assert decode(prompt=value).prompt is expected


@pytest.mark.parametrize("number", ["", None, "   "])
def test_decode_conference_without_number_raises_protocol_error(number: object) -> None:
    """A ConferenceInfo without a number cannot be matched: PbxProtocolError."""
    raw = {**conference("6400"), "number": number}
    with pytest.raises(PbxProtocolError):
        decode_conference(raw, endpoint=ENDPOINT)


def test_decode_conference_int_number_becomes_string() -> None:
    """A bare JSON number as the room number is read as its digits."""
    raw = {**conference("6400"), "number": 6400}
    assert decode_conference(raw, endpoint=ENDPOINT).number == "6400"


def test_decode_conference_name_is_stripped_and_null_name_is_empty() -> None:
    """Names are stripped; a null name is an empty string."""
    assert decode(name="  Board  ").name == "Board"
    assert decode(name=None).name == ""


# --- query_conferences ---------------------------------------------------------------------


async def test_query_conferences_matches_by_number_not_position() -> None:
    """An answer in another order, with numbers not asked for, is matched and filtered."""
    pbx = FakePbx()
    pbx.queue(
        ENDPOINT,
        ok(conferences=[conference("6402"), conference("6999"), conference("6400")]),
    )
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6400", "6402"])
    assert list(found) == ["6400", "6402"]
    assert found["6400"].name == "Room 6400"
    assert found["6402"].name == "Room 6402"
    assert pbx.bodies(ENDPOINT) == [{"number": "6400,6402"}]


async def test_query_conferences_absent_numbers_are_not_found() -> None:
    """A requested number the PBX leaves out is absent from the result."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6400", "7777", "6401"])
    assert sorted(found) == ["6400", "6401"]
    assert pbx.count(ENDPOINT) == 1


@pytest.mark.parametrize(
    "answer",
    [ok(), ok(conferences=[]), ok(conferences=None)],
    ids=["missing", "empty", "null"],
)
async def test_query_conferences_success_without_conferences_is_empty(
    answer: httpx.Response,
) -> None:
    """Success with no, an empty or a null conferences list means none found."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, answer)
    async with pbx_session(pbx.transport()) as session:
        assert await query_conferences(session, ["7777"]) == {}
    assert pbx.count(ENDPOINT) == 1


async def test_query_conferences_duplicates_collapse() -> None:
    """Duplicate numbers are asked for once, in first-seen order."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6401", "6400", "6401", "6400"])
    assert pbx.bodies(ENDPOINT) == [{"number": "6401,6400"}]
    assert sorted(found) == ["6400", "6401"]


async def test_query_conferences_empty_list_makes_no_call() -> None:
    """Asking for no numbers asks the PBX nothing (not even a login)."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        assert await query_conferences(session, []) == {}
    assert pbx.seen == []


async def test_query_conferences_all_returns_every_room() -> None:
    """ "all" sends number=all and returns every room keyed by number."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, "all")
    assert pbx.bodies(ENDPOINT) == [{"number": "all"}]
    assert sorted(found) == ["6400", "6401", "6402"]


async def test_query_conferences_batch_failure_falls_back_to_all_once() -> None:
    """A batch failing on a non-token, non-transient errno: one more call, "all", filtered."""
    pbx = FakePbx(unknown_number_errno="10004")
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6400", "7777", "6402"])
    assert pbx.bodies(ENDPOINT) == [{"number": "6400,7777,6402"}, {"number": "all"}]
    assert sorted(found) == ["6400", "6402"]


@pytest.mark.parametrize("errno", ["10004", "10039", None])
async def test_query_conferences_fallback_for_any_non_token_errno(errno: str | None) -> None:
    """Documented, undocumented and missing errnos all fall back to "all" exactly once."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, failed(errno))
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6401"])
    assert pbx.count(ENDPOINT) == 2
    assert list(found) == ["6401"]


async def test_query_conferences_failing_fallback_raises_its_error() -> None:
    """When the "all" fallback fails too, its error reaches the caller; no third call."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, failed("10004"), failed("10004"))
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxApiError) as info:
            await query_conferences(session, ["6401"])
    assert info.value.errno == "10004"
    assert pbx.count(ENDPOINT) == 2


@pytest.mark.parametrize("errno", ["30003", "20010", "30001"])
async def test_query_conferences_transient_errno_does_not_fall_back(errno: str) -> None:
    """A transient errno is raised as is: asking for "all" would fail the same way."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, failed(errno))
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxTransientError):
            await query_conferences(session, ["6400", "6401"])
    assert pbx.bodies(ENDPOINT) == [{"number": "6400,6401"}]


async def test_query_conferences_token_error_twice_does_not_fall_back() -> None:
    """A token error that survives the session's one retry is raised (as the PBX being
    unavailable: it refuses fresh tokens), not turned into an "all" query."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, failed("20004"), failed("20006"))
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxUnavailableError) as error:
            await query_conferences(session, ["6400"])
    assert isinstance(error.value.__cause__, PbxTokenError)
    assert pbx.bodies(ENDPOINT) == [{"number": "6400"}, {"number": "6400"}]
    assert pbx.count("login") == 2


async def test_query_conferences_protocol_error_does_not_fall_back() -> None:
    """A non-JSON answer is not about the numbers: raised, no "all" call."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, httpx.Response(200, content=b"<html>"))
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxProtocolError):
            await query_conferences(session, ["6400"])
    assert pbx.count(ENDPOINT) == 1


async def test_query_conferences_login_failure_is_not_a_batch_failure() -> None:
    """A login that fails (any errno) is not the batch failing: no second login via "all"."""
    pbx = FakePbx()
    pbx.queue("login", failed("10004"), failed("10004"))
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxApiError) as info:
            await query_conferences(session, ["6400"])
    assert info.value.endpoint == "login"
    assert pbx.count("login") == 1
    assert pbx.count(ENDPOINT) == 0


async def test_query_conferences_rejected_credentials_raise_auth_error_once() -> None:
    """Wrong credentials surface as PbxAuthError with one login and no query at all."""
    pbx = FakePbx(password_md5="0" * 32)
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxAuthError):
            await query_conferences(session, ["6400"])
    assert pbx.count("login") == 1
    assert pbx.count(ENDPOINT) == 0


@pytest.mark.parametrize(
    "answer",
    [ok(conferences={"6400": {}}), ok(conferences=["6400"]), ok(conferences="6400")],
    ids=["object", "list-of-strings", "string"],
)
async def test_query_conferences_malformed_list_raises_protocol_error(
    answer: httpx.Response,
) -> None:
    """conferences that is not a list of objects is a PbxProtocolError."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, answer)
    async with pbx_session(pbx.transport()) as session:
        with pytest.raises(PbxProtocolError):
            await query_conferences(session, ["6400"])
