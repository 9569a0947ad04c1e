"""The shape of a conference on the wire and the rules its values must follow.

The field names (the API's own spelling, ``participantepassword`` included) come from
:mod:`gateway.conference_codec`, the one table the gateway reads and writes them with too
(the simulator imports nothing else of the gateway). Here is the validation pbx-api.md
documents for ``conference/update``; loading a data file applies the same rules, so the
simulator never serves a conference the PBX would refuse to store.
"""

from __future__ import annotations

from typing import Any

from gateway import conference_codec as codec

# A conference exactly as it travels: every value a string.
Conference = dict[str, str]

FIELDS: tuple[str, ...] = codec.WIRE_NAMES
K2_ABSENT_FIELDS = frozenset({"mute", "prompt"})
YES_NO_FIELDS = frozenset(f.wire for f in codec.FIELDS if f.kind is codec.Kind.YES_NO)
PIN_FIELDS = frozenset(f.wire for f in codec.FIELDS if f.kind is codec.Kind.PIN)
PROMPTS = tuple(prompt.value for prompt in codec.Prompt)
FORBIDDEN_NAME_CHARACTERS = frozenset("&'<>\\|$]\"`")
# What a K2-shaped record (no mute, no prompt) is completed with when loaded.
FIELD_DEFAULTS = {"mute": "no", "prompt": "default"}


class ConferenceFieldError(ValueError):
    """A conference field holds a value the PBX would refuse; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field!r}: {message}")
        self.field = field


def _is_digits(text: str) -> bool:
    # str.isdigit() accepts superscripts and other Unicode digits; the PBX wants ASCII.
    return text.isascii() and text.isdigit()


def check_field(field: str, value: Any) -> str:
    """The wire (string) form of ``value`` for ``field``, or ``ConferenceFieldError``."""
    if field == "moderators" and isinstance(value, int) and not isinstance(value, bool):
        # Documented as "Integer": a bare JSON number is one extension.
        value = str(value)
    if not isinstance(value, str):
        raise ConferenceFieldError(field, f"must be a string, got {type(value).__name__}")
    if field == "number":
        if not _is_digits(value):
            raise ConferenceFieldError(field, f"must be digits, got {value!r}")
    elif field == "name":
        if not value.strip():
            raise ConferenceFieldError(field, "must not be blank")
        bad = sorted(FORBIDDEN_NAME_CHARACTERS.intersection(value))
        if bad:
            raise ConferenceFieldError(field, f"must not contain {''.join(bad)!r}")
    elif field in PIN_FIELDS:
        if value and not all(_is_digits(char) or char == "*" for char in value):
            raise ConferenceFieldError(field, f"must be digits and '*' only, got {value!r}")
    elif field in YES_NO_FIELDS:
        if value not in ("yes", "no"):
            raise ConferenceFieldError(field, f"must be 'yes' or 'no', got {value!r}")
    elif field == "moderators":
        if value and not all(_is_digits(part) for part in value.split(",")):
            raise ConferenceFieldError(
                field, f"must be a comma list of extension numbers, got {value!r}"
            )
    elif field == "prompt":
        if value not in PROMPTS:
            raise ConferenceFieldError(field, f"must be one of {', '.join(PROMPTS)}, got {value!r}")
    else:
        raise ConferenceFieldError(field, "is not a conference field")
    return value


def check_conference(raw: Any) -> Conference:
    """A complete, valid conference from a wire-shaped mapping (K2 records get defaults)."""
    if not isinstance(raw, dict):
        raise ValueError(f"must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    record = {**FIELD_DEFAULTS, **raw}
    missing = [field for field in FIELDS if field not in record]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    return {field: check_field(field, record[field]) for field in FIELDS}


def wire_view(conference: Conference, *, left_out: frozenset[str] = frozenset()) -> Conference:
    """The conference as the PBX model sends it, without the fields its firmware lacks."""
    if not left_out:
        return dict(conference)
    return {key: value for key, value in conference.items() if key not in left_out}
