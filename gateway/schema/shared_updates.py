"""One execution per room update and selection, shared by every subscriber that asked the same.

A room update reaches every subscriber of the room as one :class:`SessionUpdate` object.
Without sharing, graphql-core executes each subscriber's selection set against it, the same
work a thousand times over for a thousand subscribers asking the same thing. This executor
(strawberry's, used for every operation) keys a ``conferenceSessions`` subscription by what
decides its answer, once per subscription:

- the operation and the fragments it can reach, printed (so spacing and comments do not
  matter; aliases, fragments and directives do);
- the coerced variable values;
- the caller's scopes (what the answer may depend on; today the live types read none, but a
  field that checks one later stays correct).

The first subscriber to receive an update executes and leaves the ``ExecutionResult`` on the
update (:attr:`SessionUpdate.shared`), the others with the same key take it. Everything
around the execution stays per subscriber: strawberry's extensions and their results,
coding and logging the errors with the subscriber's request id, the frame and its sending.
An ``INITIAL`` update is made for its subscriber alone, so it is executed for it alone and
nothing is kept (nor is a result with errors: only an ``INITIAL`` carries one); a slow
consumer's end is raised by the source stream, before any execution.

Bounded: an update keeps at most :data:`MAX_SELECTIONS` results (the rest are executed
unshared), and its results go with it once no subscriber's buffer holds it. Only a result
computed without awaiting is kept (all of today's live fields).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import orjson
from graphql import OperationType, print_ast
from graphql.language import FragmentSpreadNode, SelectionSetNode, visit
from graphql.language.visitor import Visitor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.live.feed import UpdateReason
from gateway.schema.context import gateway_context
from gateway.schema.subscription import ConferenceSessionUpdateNode

SUPPORTED: Final = hasattr(StrawberryGraphQLCoreExecutionContext, "build_per_event_executor")
"""Whether this graphql-core runs each subscription event through a per-event executor
(3.3), where an update's result can be shared. On 3.2, which the dependency floor still
allows, updates run unshared on strawberry's own executor (:func:`executor_class`)."""

MAX_SELECTIONS = 32
"""Distinct selections whose results one update keeps."""

_UNKNOWN = object()

executions = 0
"""Selection sets of ``conferenceSessions`` updates executed by this process (tests count)."""


class SharedUpdatesExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, executing a ``conferenceSessions`` update once per selection."""

    share: ClassVar[bool] = True

    _share_key: object = _UNKNOWN
    """The subscription's key (computed at its first event); None: never shared."""

    def build_per_event_executor(self, payload: Any) -> Any:
        if self._share_key is _UNKNOWN:
            # On the subscription's executor, so every per-event copy carries it.
            self._share_key = self._selection_key() if self.share else None
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        node = self.root_value
        if not isinstance(node, ConferenceSessionUpdateNode):
            return super().execute_operation(serially)
        key = self._share_key
        if key is None or key is _UNKNOWN or node.update.reason is UpdateReason.INITIAL:
            # An INITIAL update is made for its subscriber alone: nobody to share with.
            return self._execute(serially)
        shared = node.update.shared
        found = shared.get(key)
        if found is not None:
            return found
        result = self._execute(serially)
        # Only a finished result is shared: every field of a live update resolves without
        # awaiting (the count test holds it to that); an execution still awaiting would tie
        # the subscribers waiting on it to the one that started it.
        # And one without errors (only an INITIAL update carries one): an error's traceback
        # refers to the update, which would then hold itself.
        if len(shared) < MAX_SELECTIONS and not self.is_awaitable(result) and not result.errors:
            shared[key] = result
        return result

    def _execute(self, serially: bool | None) -> Any:
        global executions
        executions += 1
        return super().execute_operation(serially)

    def _selection_key(self) -> object:
        """What decides a ``conferenceSessions`` answer (module docstring), or None when the
        operation is no such subscription or its variables cannot be keyed."""
        operation = self.operation
        if operation.operation is not OperationType.SUBSCRIPTION:
            return None
        try:
            variables = orjson.dumps(self.variable_values.coerced, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        fragments = tuple(
            print_ast(self.fragment_definitions[name]) for name in _reachable(self, operation)
        )
        context = gateway_context(self.context_value)
        scopes = None if context is None else tuple(sorted(context.identity.scopes))
        return (print_ast(operation), fragments, variables, scopes)


class UnsharedExecutor(SharedUpdatesExecutor):
    """Every subscriber executes its own (``GATEWAY_LIVE_SHARE_UPDATES=false``)."""

    share = False


def _reachable(executor: SharedUpdatesExecutor, operation: Any) -> list[str]:
    """The names of the fragments ``operation`` spreads, directly or through others, sorted."""
    seen: set[str] = set()
    pending: list[SelectionSetNode] = [operation.selection_set]
    while pending:
        collector = _Spreads()
        visit(pending.pop(), collector)
        for name in collector.names - seen:
            seen.add(name)
            fragment = executor.fragment_definitions.get(name)
            if fragment is not None:
                pending.append(fragment.selection_set)
    return sorted(name for name in seen if name in executor.fragment_definitions)


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.names.add(node.name.value)


def executor_class(share: bool) -> type[SharedUpdatesExecutor] | None:
    """The schema's execution context: sharing live updates or not; None (strawberry's
    own) where graphql-core lacks the per-event executor this one overrides."""
    if not SUPPORTED:
        return None
    return SharedUpdatesExecutor if share else UnsharedExecutor
