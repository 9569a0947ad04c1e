"""``schema.graphql`` is the code's schema, printed; every part of it is described."""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLEnumType, GraphQLObjectType

from gateway.schema import build_schema

ROOT = Path(__file__).resolve().parent.parent


def test_schema_file_matches_code() -> None:
    """schema.graphql equals `pbx-gateway export-schema` (run `make schema` to refresh it)."""
    printed = build_schema().as_str() + "\n"
    assert (ROOT / "schema.graphql").read_text(encoding="utf-8") == printed


def test_schema_every_type_field_and_argument_is_described() -> None:
    """A person in GraphiQL's docs pane finds a description on everything we define."""
    schema = build_schema()._schema
    undescribed = []
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Boolean", "Int", "Float", "ID"}:
            continue
        if not type_.description:
            undescribed.append(name)
        if isinstance(type_, GraphQLObjectType):
            for field_name, field in type_.fields.items():
                if not field.description:
                    undescribed.append(f"{name}.{field_name}")
                undescribed += [
                    f"{name}.{field_name}({arg})"
                    for arg, argument in field.args.items()
                    if not argument.description
                ]
        if isinstance(type_, GraphQLEnumType):
            undescribed += [
                f"{name}.{v}" for v, value in type_.values.items() if not value.description
            ]
    assert undescribed == []
