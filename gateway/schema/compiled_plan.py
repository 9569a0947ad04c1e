"""Compiled plans: the common reads answered straight from the store, without strawberry.

A read that misses the response cache (numbers drawn at random from thousands of rooms)
spent most of its time in graphql-core's execution: resolvers, the DataLoader, a
permission check and a type check per field and per room, and the extensions' hooks. The
store had every room already. So the validated document of such a read is compiled once
(:func:`compile_plan`, kept beside the document in :mod:`gateway.schema.document_cache`)
into a :class:`Plan`: which root fields, with which arguments, and which fields of each
room, under which response keys. Running it (:meth:`Plan.run`) coerces the variables,
checks the numbers, reads the store once (:meth:`ConferenceStore.answer_now`) and builds
the same ``data`` (and ``extensions.stale``) strawberry would.

strawberry stays the reference. A plan covers only what it can answer exactly:

- a ``query`` operation without directives, of ``conferences(numbers:)`` (a list, a
  string or a variable), ``conference(number:)`` and ``__typename``, with aliases,
  inline fragments and fragment spreads on ``Query`` and ``Conference``;
- of a room, its scalar fields and ``__typename`` (not ``session``: live data);
- variables of the types those arguments take (``String``, ``[String]``, with or
  without ``!``), without default values.

Anything else is not compiled (:func:`compile_plan` answers None), and a run raises
:class:`Fallback` before it answers whenever strawberry's answer would hold an error
(a bad or null number, too many numbers, a missing scope, a room the PBX sent unreadable,
a variable that does not coerce) or need a wait (a room not in the store, or being
fetched): the request then goes the long way, which is always correct. A differential test
(``tests/test_compiled_plan.py``) holds the two to byte-identical answers.
``GATEWAY_COMPILED_PLANS=false`` turns plans off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Literal

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    ListTypeNode,
    ListValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    TypeNode,
    ValueNode,
    VariableNode,
)

from gateway.errors import BadInputError
from gateway.pbx.conferences import Conference
from gateway.schema.numbers import NumberBudget, non_null_items
from gateway.security.identity import PINS, READ
from gateway.store import ConferenceStore
from gateway.store_entries import ServedReport


class Fallback(Exception):
    """This request takes strawberry's way (the reference): the plan cannot answer it exactly."""


class _Uncompilable(Exception):
    """The document holds something no plan covers."""


def _string(value: object) -> str:
    if type(value) is not str:
        raise Fallback  # graphql-core would raise a serialization error
    return value


def _has_pin(attribute: str) -> Read:
    # As gateway.schema.types: null when the PBX did not report the PIN at all.
    def read(room: Conference) -> bool | None:
        if attribute in room.unreported:
            return None
        return getattr(room, attribute) is not None

    return read


Read = Callable[[Conference], Any]

_ROOM_FIELDS: Final[dict[str, Read]] = {
    # The schema's Conference fields (gateway.schema.types.ConferenceNode), read as its
    # resolvers read them; the differential test covers every one. The decoded record's
    # types are the schema's (str, bool or None; moderators a tuple of str, which JSON
    # writes as the list), so most fields are one attribute read, in C.
    "number": attrgetter("number"),
    "name": attrgetter("name"),
    "participantPassword": attrgetter("participant_password"),
    "moderatorPassword": attrgetter("moderator_password"),
    "hasParticipantPassword": _has_pin("participant_password"),
    "hasModeratorPassword": _has_pin("moderator_password"),
    "waitForModerator": attrgetter("wait_for_moderator"),
    "allowInvite": attrgetter("allow_invite"),
    "moderators": attrgetter("moderators"),
    "musicOnHold": attrgetter("music_on_hold"),
    "mute": attrgetter("mute"),
    "prompt": lambda room: None if room.prompt is None else room.prompt.name,
    "__typename": lambda room: "Conference",
}
_PIN_FIELDS: Final = frozenset({"participantPassword", "moderatorPassword"})

_ABSENT: Final = object()
"""A variable the request did not give (and which has no default)."""


@dataclass(frozen=True, slots=True)
class _Variable:
    """A variable definition a plan can coerce: ``String`` or ``[String]``, ``!`` or not."""

    name: str
    is_list: bool
    non_null: bool
    items_non_null: bool

    def coerce(self, given: Mapping[str, Any]) -> object:
        """The value as graphql-core would coerce it; Fallback where it would refuse it."""
        if self.name not in given:
            if self.non_null:
                raise Fallback
            return _ABSENT
        value = given[self.name]
        if value is None:
            if self.non_null:
                raise Fallback
            return None
        if not self.is_list:
            return _string(value)
        if isinstance(value, str):
            return [value]  # input coercion: one item stands for a list of one
        if not isinstance(value, list):
            raise Fallback
        for item in value:
            if item is None and self.items_non_null:
                raise Fallback
            if item is not None and type(item) is not str:
                raise Fallback
        return value


Item = str | None | _Variable
"""A literal item of a ``numbers`` list, or a variable standing for one."""


@dataclass(frozen=True, slots=True)
class _RootField:
    key: str
    kind: Literal["typename", "conferences", "conference"]
    argument: Item | tuple[Item, ...] = None
    """``conferences``: the items, or one variable for the whole list (or a string);
    ``conference``: the string or its variable."""
    room: tuple[tuple[str, Read], ...] = ()
    """Response key and reader of each field asked of a room, in order."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One query operation, compiled (see the module docstring)."""

    operation_name: str | None
    variables: tuple[_Variable, ...]
    roots: tuple[_RootField, ...]
    reads: bool
    """Whether it reads rooms (needs the ``conferences:read`` scope)."""
    pins: bool
    """Whether it asks for a PIN field (needs ``conferences:pins``)."""

    def run(
        self,
        variables: Mapping[str, Any] | None,
        scopes: frozenset[str],
        store: ConferenceStore,
        max_numbers: int,
    ) -> tuple[dict[str, Any], ServedReport]:
        """The answer's ``data`` and what the store served (its stale marks and sources);
        Fallback, before the store is read, when strawberry's answer would differ in kind."""
        given = variables or {}
        values = {variable.name: variable.coerce(given) for variable in self.variables}
        if (self.reads and READ not in scopes) or (self.pins and PINS not in scopes):
            raise Fallback  # FORBIDDEN at the field's path (or each room's PIN)
        budget = NumberBudget(max_numbers)
        asked: list[list[str]] = []
        try:
            for root in self.roots:
                if root.kind == "conferences":
                    asked.append(budget.admit(non_null_items(_numbers(root.argument, values))))
                elif root.kind == "conference":
                    asked.append(budget.admit([_number(root.argument, values)]))
                else:
                    asked.append([])
        except BadInputError:
            raise Fallback from None
        # One store lookup in the order strawberry's DataLoader batches them: field by
        # field, each field's numbers in order, each number once.
        wanted = list(dict.fromkeys(number for numbers in asked for number in numbers))
        report = ServedReport()
        found = store.answer_now(wanted, report=report) if wanted else []
        if found is None:
            raise Fallback
        rooms: dict[str, Any] = dict(zip(wanted, found, strict=True))
        data: dict[str, Any] = {}
        for root, numbers in zip(self.roots, asked, strict=True):
            if root.kind == "typename":
                data[root.key] = "Query"
            elif root.kind == "conferences":
                fields = root.room
                data[root.key] = [
                    {key: read(room) for key, read in fields}
                    for room in (rooms[number] for number in numbers)
                    if room is not None  # a number the PBX does not know is left out
                ]
            else:
                room = rooms[numbers[0]]
                data[root.key] = (
                    None if room is None else {key: read(room) for key, read in root.room}
                )
        return data, report


def _numbers(argument: Item | tuple[Item, ...], values: Mapping[str, object]) -> list[str | None]:
    if isinstance(argument, tuple):
        return [_item(item, values) for item in argument]
    if isinstance(argument, _Variable):
        value = values[argument.name]
        if value is None or value is _ABSENT:
            raise Fallback  # every room: the listing, which plans leave to strawberry
        items: list[str | None] = value  # type: ignore[assignment]  # coerced: a list
        return items
    return [argument]  # one string literal: a list of one


def _item(item: Item, values: Mapping[str, object]) -> str | None:
    if isinstance(item, _Variable):
        value = values[item.name]
        return None if value is _ABSENT else value  # type: ignore[return-value]
    return item


def _number(argument: Item | tuple[Item, ...], values: Mapping[str, object]) -> str:
    value = values[argument.name] if isinstance(argument, _Variable) else argument
    if type(value) is not str:
        raise Fallback
    return value


def compile_plan(document: DocumentNode, operation_name: str | None) -> Plan | None:
    """The plan of ``operation_name``'s operation in a *validated* ``document``, or None
    when it holds anything a plan does not cover (strawberry then answers every time)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        operation = operations[0] if len(operations) == 1 else None
    else:
        named = [o for o in operations if o.name is not None and o.name.value == operation_name]
        operation = named[0] if named else None
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    try:
        return _Compiler(fragments).operation(operation)
    except _Uncompilable:
        return None


class _Compiler:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self._variables: dict[str, _Variable] = {}

    def operation(self, operation: OperationDefinitionNode) -> Plan:
        if operation.directives:
            raise _Uncompilable
        for definition in operation.variable_definitions or ():
            if definition.directives or definition.default_value is not None:
                raise _Uncompilable
            name = definition.variable.name.value
            self._variables[name] = _variable(name, definition.type)
        roots: list[_RootField] = []
        pins = False
        for key, nodes in self._collect([operation.selection_set], "Query").items():
            root, names = self._root(key, nodes)
            pins = pins or not _PIN_FIELDS.isdisjoint(names)
            roots.append(root)
        return Plan(
            operation_name=operation.name.value if operation.name else None,
            variables=tuple(self._variables.values()),
            roots=tuple(roots),
            reads=any(root.kind != "typename" for root in roots),
            pins=pins,
        )

    def _root(self, key: str, nodes: list[FieldNode]) -> tuple[_RootField, set[str]]:
        """The root field under ``key``, and the names of the room fields it asks for."""
        field = nodes[0]  # validation proved every node of one key the same field and arguments
        name = field.name.value
        if name == "__typename":
            return _RootField(key, "typename"), set()
        if name not in ("conferences", "conference"):
            raise _Uncompilable  # introspection (__schema, __type), or a field added later
        arguments = {argument.name.value: argument.value for argument in field.arguments or ()}
        asked = self._room_nodes(nodes)
        room = tuple(
            (node.alias.value if node.alias else node.name.value, _ROOM_FIELDS[node.name.value])
            for node in asked
        )
        names = {node.name.value for node in asked}
        if name == "conferences":
            numbers = arguments.get("numbers")
            if numbers is None or isinstance(numbers, NullValueNode):
                raise _Uncompilable  # every room: the listing is left to strawberry
            return _RootField(key, "conferences", self._numbers(numbers), room), names
        number = arguments.get("number")
        if number is None:
            raise _Uncompilable
        return _RootField(key, "conference", self._value(number), room), names

    def _room_nodes(self, nodes: list[FieldNode]) -> list[FieldNode]:
        """The fields asked of a room, one per response key, in graphql-core's order."""
        merged = self._collect([node.selection_set for node in nodes], "Conference")
        room: list[FieldNode] = []
        for same_key in merged.values():
            field = same_key[0]
            if field.name.value not in _ROOM_FIELDS:
                raise _Uncompilable  # session (live data), or a field added later
            room.append(field)
        return room

    def _collect(
        self, selection_sets: Sequence[SelectionSetNode | None], type_name: str
    ) -> dict[str, list[FieldNode]]:
        """graphql-core's collect_fields over one object type: the field nodes by response
        key, in order of first appearance, each fragment spread once."""
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def collect(selection_set: SelectionSetNode | None) -> None:
            if selection_set is None:
                raise _Uncompilable
            for selection in selection_set.selections:
                if selection.directives:
                    raise _Uncompilable  # @include/@skip and the like: left to strawberry
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    if condition is not None and condition.name.value != type_name:
                        raise _Uncompilable
                    collect(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in visited:
                        continue
                    visited.add(name)
                    fragment = self._fragments.get(name)
                    if (
                        fragment is None
                        or fragment.directives
                        or fragment.type_condition.name.value != type_name
                    ):
                        raise _Uncompilable
                    collect(fragment.selection_set)
                else:
                    raise _Uncompilable

        for selection_set in selection_sets:
            collect(selection_set)
        return fields

    def _numbers(self, value: ValueNode) -> Item | tuple[Item, ...]:
        if isinstance(value, ListValueNode):
            return tuple(self._item(item) for item in value.values)
        return self._value(value)

    def _item(self, value: ValueNode) -> Item:
        if isinstance(value, NullValueNode):
            return None
        return self._value(value)

    def _value(self, value: ValueNode) -> Item:
        if isinstance(value, StringValueNode):
            return value.value
        if isinstance(value, VariableNode):
            variable = self._variables.get(value.name.value)
            if variable is None:
                raise _Uncompilable
            return variable
        raise _Uncompilable


def _variable(name: str, type_node: TypeNode) -> _Variable:
    """A variable of a type plans coerce (``String``, ``[String]``, with any ``!``)."""
    non_null = isinstance(type_node, NonNullTypeNode)
    inner = type_node.type if isinstance(type_node, NonNullTypeNode) else type_node
    if isinstance(inner, ListTypeNode):
        item = inner.type
        items_non_null = isinstance(item, NonNullTypeNode)
        named = item.type if isinstance(item, NonNullTypeNode) else item
        if isinstance(named, NamedTypeNode) and named.name.value == "String":
            return _Variable(name, is_list=True, non_null=non_null, items_non_null=items_non_null)
    elif isinstance(inner, NamedTypeNode) and inner.name.value == "String":
        return _Variable(name, is_list=False, non_null=non_null, items_non_null=False)
    raise _Uncompilable
