"""``examples/service/conference_report.py``: run against a gateway with API keys, and its
hand-written types checked against ``schema.graphql``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Final, Literal, get_type_hints

from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    parse,
    validate,
)

from examples.service.conference_report import QUERY, Conference, Query
from gateway.security.identity import READ
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import api_key_security, write_keys

ROOT: Final = Path(__file__).resolve().parent.parent
EXAMPLE: Final = ROOT / "examples" / "service" / "conference_report.py"
TYPED_DICTS: Final[dict[str, type]] = {"Query": Query, "Conference": Conference}
"""The example's TypedDicts by the schema type each mirrors."""
SCALARS: Final[dict[str, type]] = {
    "String": str,
    "ID": str,
    "Boolean": bool,
    "Int": int,
    "Float": float,
}

REPORT: Final = """\
12 conference rooms

Rooms with a PIN (10):
  6401   PM                       members
  6402   Board Room               members + moderator
  6403   Support Bridge           moderator
  6404   Engineering Stand-up     members
  6405   All Hands                members + moderator
  6406   Customer Escalations     members + moderator
  6407   Finance (Q-close)        members + moderator
  6409   Night Shift              members
  6410   Training Room 1          members + moderator
  6411   Réunion Lyon             moderator

Rooms waiting for a moderator (4):
  6402   Board Room               moderators 4000
  6405   All Hands                moderators 4000, 4001, 4003
  6406   Customer Escalations     moderators 4005
  6410   Training Room 1          moderators 4020
"""


async def run_report(stack: Stack, api_key: str | None) -> tuple[int, str, str]:
    """Run the example as a user would, against ``stack``: exit status, stdout, stderr."""
    environ = {key: value for key, value in os.environ.items() if key != "GATEWAY_API_KEY"}
    if api_key is not None:
        environ["GATEWAY_API_KEY"] = api_key
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--url",
        f"{stack.gateway.base_url}/graphql",
        env={**environ, "PYTHONIOENCODING": "utf-8"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def keyed_stack(gateway_stack: StackFactory, tmp_path: Path) -> tuple[Stack, str]:
    """A gateway with GATEWAY_AUTH=api-key, and a read-only key for the report."""
    stored, plain = write_keys(tmp_path, {"conference-report": [READ]})
    stack = await gateway_stack(security=api_key_security(stored))
    return stack, plain["conference-report"]


async def test_conference_report_lists_pin_rooms_and_rooms_waiting_for_a_moderator(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """With a read-only API key, the report names the demo rooms with a PIN (whose) and the
    rooms that wait for a moderator, in room order, from one PBX call."""
    stack, key = await keyed_stack(gateway_stack, tmp_path)
    status, out, err = await run_report(stack, key)
    assert (status, err) == (0, "")
    assert out == REPORT
    assert stack.calls() == 1


async def test_conference_report_says_how_old_stale_data_is(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """With the PBX down after the cache expired, the report is made from the gateway's last
    known data and says so, with its age."""
    stack, key = await keyed_stack(gateway_stack, tmp_path)
    await run_report(stack, key)
    stack.sim.go_down()
    stack.clock.advance(7 * 60)
    status, out, _ = await run_report(stack, key)
    assert status == 0
    lines = out.splitlines()
    assert lines[:2] == [
        "12 conference rooms",
        "PBX unreachable (PBX_UNAVAILABLE): data from 7 minutes ago",
    ]
    assert "\n".join(lines[2:]) + "\n" == REPORT.split("\n", 1)[1]


async def test_conference_report_just_past_the_ttl_reports_no_outage(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """Just past the gateway's TTL the answer is marked REVALIDATING (being refreshed): the
    report is the normal one, with no "PBX unreachable" line."""
    stack, key = await keyed_stack(gateway_stack, tmp_path)
    await run_report(stack, key)
    stack.clock.advance(31)  # past the 30 s TTL, inside the 30 s revalidate window
    status, out, _ = await run_report(stack, key)
    assert (status, out) == (0, REPORT)


async def test_conference_report_without_a_key_exits_1_saying_why(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """No key: nothing on stdout, exit status 1, and the gateway's refusal on stderr."""
    stack, _ = await keyed_stack(gateway_stack, tmp_path)
    status, out, err = await run_report(stack, None)
    assert (status, out) == (1, "")
    assert err.startswith("conference-report: the gateway answered without data: ")
    assert stack.calls() == 0


# --- the example's types against schema.graphql -------------------------------------------


def schema() -> GraphQLSchema:
    return build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))


def python_type(graphql_type: GraphQLOutputType) -> Any:
    """The annotation a TypedDict field needs for ``graphql_type``: nullable is ``| None``,
    enums are Literals of their values, object types are the example's TypedDicts."""
    if isinstance(graphql_type, GraphQLNonNull):
        return _non_null(graphql_type.of_type)
    return _non_null(graphql_type) | None


def _non_null(graphql_type: GraphQLOutputType) -> Any:
    if isinstance(graphql_type, GraphQLList):
        return list[python_type(graphql_type.of_type)]  # type: ignore[misc]
    if isinstance(graphql_type, GraphQLScalarType):
        return SCALARS[graphql_type.name]
    if isinstance(graphql_type, GraphQLEnumType):
        return Literal[tuple(graphql_type.values)]
    if isinstance(graphql_type, GraphQLObjectType):
        return TYPED_DICTS[graphql_type.name]
    raise AssertionError(f"no Python type for {graphql_type}")


def test_example_typed_dicts_agree_with_the_schema() -> None:
    """Every field the example's TypedDicts name exists on the schema type of the same name,
    with the Python type that GraphQL type has (nullability and lists included)."""
    types = schema().type_map
    for name, typed_dict in TYPED_DICTS.items():
        graphql_type = types[name]
        assert isinstance(graphql_type, GraphQLObjectType)
        for field, annotation in get_type_hints(typed_dict).items():
            assert field in graphql_type.fields, f"{name}.{field} is not in schema.graphql"
            wanted = python_type(graphql_type.fields[field].type)
            assert annotation == wanted, f"{name}.{field}: {annotation} is not {wanted}"


def test_example_query_is_valid_and_selects_what_its_types_name() -> None:
    """The example's document validates against schema.graphql and selects exactly the fields
    its TypedDicts declare, no more, no fewer."""
    document = parse(QUERY)
    assert validate(schema(), document) == []
    (operation,) = document.definitions
    assert isinstance(operation, OperationDefinitionNode)
    assert selected(operation.selection_set) == {
        "conferences": {field: None for field in get_type_hints(Conference)}
    }
    assert set(get_type_hints(Query)) == {"conferences"}


def selected(selection_set: SelectionSetNode | None) -> dict[str, Any] | None:
    """The field names a selection set asks for, nested."""
    if selection_set is None:
        return None
    fields = [node for node in selection_set.selections if isinstance(node, FieldNode)]
    assert len(fields) == len(selection_set.selections), "no fragments in the example"
    return {node.name.value: selected(node.selection_set) for node in fields}
