"""The conference field table: the one list every module derives a room's fields from."""

from __future__ import annotations

import dataclasses

import graphql

from gateway import conference_codec as codec
from gateway.pbx.conference_update import ConferenceChanges
from gateway.pbx.conferences import Conference
from gateway.schema import build_schema

SAMPLES = {
    codec.Kind.TEXT: "Board room",
    codec.Kind.PIN: "12*4",
    codec.Kind.YES_NO: True,
    codec.Kind.LIST: ("4000", "4001"),
    codec.Kind.ENUM: codec.Prompt.EXTEN,
}


def test_codec_attributes_are_the_records_and_the_changes_fields() -> None:
    """The table names every field of the decoded record and of a change, in their order."""
    attributes = [field.attribute for field in codec.FIELDS]
    record = [f.name for f in dataclasses.fields(Conference) if f.name != "unreported"]
    assert record == attributes
    assert [f.name for f in dataclasses.fields(ConferenceChanges)] == attributes


def test_codec_schema_names_are_the_schemas_fields() -> None:
    """Each schema name is a field of both the Conference type and UpdateConferenceInput."""
    schema = graphql.build_schema(build_schema().as_str())
    names = [field.schema for field in codec.FIELDS]
    conference = schema.type_map["Conference"]
    update = schema.type_map["UpdateConferenceInput"]
    assert isinstance(conference, graphql.GraphQLObjectType)
    assert isinstance(update, graphql.GraphQLInputObjectType)
    assert set(names) <= set(conference.fields)
    assert set(update.fields) == set(names)


def test_codec_reads_what_it_writes_and_keeps_what_it_plains() -> None:
    """For every field, read(write(v)) == v and from_plain(to_plain(v)) == v; None stays."""
    for field in codec.FIELDS:
        value = SAMPLES[field.kind]
        assert codec.read(field, codec.write(field, value)) == value, field.wire
        assert codec.from_plain(field, codec.to_plain(field, value)) == value, field.wire
        assert codec.to_plain(field, None) is None


def test_codec_unreadable_values_read_as_none() -> None:
    """Shapes a firmware may send that cannot be read decode to None, never raise."""
    by_wire = {field.wire: field for field in codec.FIELDS}
    assert codec.read(by_wire["mute"], "maybe") is None
    assert codec.read(by_wire["prompt"], "loud") is None
    assert codec.read(by_wire["moderators"], {"a": 1}) is None
    assert codec.read(by_wire["moderatorpassword"], True) is None
