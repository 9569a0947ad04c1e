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
from gateway.pbx.conferences import (
    Conference,
    FieldNote,
    Prompt,
    QueryAnswer,
    UnreadableRoom,
    decode_conference,
)
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
        (["4000", 4001], ("4000", "4001")),
    ],
    ids=["empty", "one", "comma-list", "int", "padded", "empty-items", "list"],
)
def test_decode_conference_moderators_in_every_shape(
    moderators: object, expected: tuple[str, ...]
) -> None:
    """moderators "", "4000", "4000,4001", 4000 and padded lists all become extension tuples."""
    assert decode(moderators=moderators).moderators == expected


def test_decode_conference_moderators_absent_is_not_reported() -> None:
    """A ConferenceInfo without moderators (or with null) says nothing about them: None."""
    raw = conference("6400")
    del raw["moderators"]
    assert decode_conference(raw, endpoint=ENDPOINT).moderators is None
    assert decode(moderators=None).unreported == {"moderators"}


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


def test_decode_conference_absent_pins_are_none_and_unreported() -> None:
    """PIN fields missing altogether are None too, and named as not reported."""
    raw = conference("6400")
    del raw["participantepassword"]
    del raw["moderatorpassword"]
    decoded = decode_conference(raw, endpoint=ENDPOINT)
    assert (decoded.participant_password, decoded.moderator_password) == (None, None)
    assert decoded.unreported == {"participant_password", "moderator_password"}
    assert decode(participantepassword="").unreported == frozenset()


def test_decode_conference_reads_corrected_pin_spelling() -> None:
    """A firmware that spells it participantpassword is read the same."""
    raw = conference("6400")
    del raw["participantepassword"]
    raw["participantpassword"] = "1234"
    assert decode_conference(raw, endpoint=ENDPOINT).participant_password == "1234"


def test_decode_conference_pin_of_zeros_is_kept() -> None:
    """A PIN "0000" is a PIN (not confused with falsy)."""
    assert decode(participantepassword="0000").participant_password == "0000"


FLAGS = {
    "waitformoderator": "wait_for_moderator",
    "allowinvite": "allow_invite",
    "musiconhold": "music_on_hold",
    "mute": "mute",
}


@pytest.mark.parametrize("field", list(FLAGS))
@pytest.mark.parametrize("value", ["maybe", "", 2, ["yes"], "y", {"a": 1}])
def test_decode_conference_bad_yes_no_is_unreported_and_noted(field: str, value: object) -> None:
    """A yes/no field with anything else is None, named unreadable in the notes; the room
    itself decodes."""
    notes: list[FieldNote] = []
    decoded = decode_conference(
        conference("6400", **{field: value}), endpoint=ENDPOINT, notes=notes
    )
    assert getattr(decoded, FLAGS[field]) is None
    assert decoded.unreported == {FLAGS[field]}
    assert notes == [FieldNote("6400", field, absent=False)]


@pytest.mark.parametrize("field", list(FLAGS))
def test_decode_conference_missing_flag_is_unreported(field: str) -> None:
    """Any yes/no field left out (older firmware) is None and noted as absent."""
    raw = conference("6400")
    del raw[field]
    notes: list[FieldNote] = []
    decoded = decode_conference(raw, endpoint=ENDPOINT, notes=notes)
    assert getattr(decoded, FLAGS[field]) is None
    assert notes == [FieldNote("6400", field, absent=True)]


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False)])
def test_decode_conference_json_booleans_are_flags(value: bool, expected: bool) -> None:
    """A firmware that sends JSON true/false instead of "yes"/"no" is read the same."""
    assert decode(allowinvite=value).allow_invite is expected


@pytest.mark.parametrize("name", [{"x": 1}, ["Board"], True])
def test_decode_conference_name_of_garbage_type_raises_protocol_error(name: object) -> None:
    """A name that is not text makes the room unreadable (PbxProtocolError naming it)."""
    with pytest.raises(PbxProtocolError, match="6400"):
        decode(name=name)


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
    assert [room.name for room in found.values() if isinstance(room, Conference)] == [
        "Room 6400",
        "Room 6402",
    ]
    assert pbx.bodies(ENDPOINT) == [{"number": "6400,6402"}]


async def test_query_conferences_short_batch_leaves_numbers_unproven() -> None:
    """A number a multi-number batch leaves out is absent and unproven (not "unknown")."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6400", "7777", "6401"])
    assert sorted(found) == ["6400", "6401"]
    assert found.unproven == {"7777"}
    assert pbx.count(ENDPOINT) == 1


async def test_query_conferences_single_number_answer_proves_absence() -> None:
    """A single-number answer without it proves it unknown: nothing unproven."""
    pbx = FakePbx()
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["7777"])
    assert found == {}
    assert found.unproven == frozenset()


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


async def test_query_conferences_batch_failure_leaves_every_number_unproven() -> None:
    """A batch failing on a non-token, non-transient errno proves nothing: every number is
    unproven (the store checks them against its shared listing); no "all" call here."""
    pbx = FakePbx(unknown_number_errno="10004")
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6400", "7777", "6402"])
    assert pbx.bodies(ENDPOINT) == [{"number": "6400,7777,6402"}]
    assert found == {}
    assert found.unproven == {"6400", "7777", "6402"}


@pytest.mark.parametrize("errno", ["10004", "10039", "10110", None])
async def test_query_conferences_failure_for_any_non_token_errno_is_unproven(
    errno: str | None,
) -> None:
    """Documented, undocumented and missing errnos: one call, the number left unproven."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, failed(errno))
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6401"])
    assert pbx.count(ENDPOINT) == 1
    assert found.unproven == {"6401"}


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


async def test_query_conferences_unreadable_entries_keep_their_place() -> None:
    """Entries that cannot be read (not an object, no number, a garbage name) become
    UnreadableRoom in their place; the readable rooms are answered."""
    pbx = FakePbx()
    entries = [
        conference("6400"),
        "6401",
        {**conference("6402"), "number": None},
        conference("6403", name={"x": 1}),
        conference("6404"),
    ]
    pbx.queue(ENDPOINT, ok(conferences=entries))
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, "all")
    kinds = [type(room).__name__ for room in found.order]
    assert kinds == [
        "Conference",
        "UnreadableRoom",
        "UnreadableRoom",
        "UnreadableRoom",
        "Conference",
    ]
    assert sorted(found) == ["6400", "6403", "6404"]
    unreadable = found["6403"]
    assert isinstance(unreadable, UnreadableRoom)
    assert "room 6403" in unreadable.reason
    assert isinstance(unreadable.error(), PbxProtocolError)


async def test_query_conferences_numberless_entry_leaves_single_number_unproven() -> None:
    """A single-number answer holding a room without a number proves nothing: it may be it."""
    pbx = FakePbx()
    pbx.queue(ENDPOINT, ok(conferences=[{**conference("6400"), "number": ""}]))
    async with pbx_session(pbx.transport()) as session:
        found = await query_conferences(session, ["6400"])
    assert isinstance(found, QueryAnswer)
    assert found.unproven == {"6400"}


@pytest.mark.parametrize(
    "answer",
    [ok(conferences={"6400": {}}), ok(conferences="6400")],
    ids=["object", "string"],
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
