"""The key's role checked against the document once, before anything runs.

One walk over the operation (each fragment once, however often it is
spread) finds the root fields the role may not call and the fields it may
not read (`graph.permissions` states the rules). The answer is kept per
document, operation and role, so a repeated query costs a look-up.

A root field beyond the role refuses the whole operation: nothing runs.
A field the role may not read resolves to null with a FORBIDDEN error at its
path and the rest of the response stands (such fields are nullable in the
schema). Only an operation that selects such a field runs on the executor
that looks at each field; every other one pays nothing per field.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
)
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path

from graph.attribute_resolvers import PlainFieldsExecutor
from graph.errors import ClientError, forbidden
from graph.permissions import READ_RULES, allowed_roles
from resolvers.shops import Role

CACHE_SIZE = 1024


@dataclass(frozen=True)
class Rights:
    """What one operation asks for beyond one role."""

    denied_roots: tuple[str, ...]
    # (object type, field) pairs the operation selects and the role may not read.
    refused: frozenset[tuple[str, str]]


def _object_types(
    schema: GraphQLSchema, parent: GraphQLObjectType | GraphQLInterfaceType
) -> tuple[GraphQLObjectType, ...]:
    """The types a field selected on `parent` can really run on (rights are per object type)."""
    if isinstance(parent, GraphQLObjectType):
        return (parent,)
    return tuple(schema.get_possible_types(parent))


def check_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    role: Role,
) -> Rights:
    """Walks the operation once; each fragment is entered once, whatever its spreads.

    Rights depend only on a field's type and name, never on where it sits,
    so a fragment's answer is the same at every spread.
    """
    rule = READ_RULES[role]
    root = schema.get_root_type(operation.operation)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    denied: set[str] = set()
    refused: set[tuple[str, str]] = set()
    entered: set[str] = set()
    todo: list[tuple[SelectionSetNode, GraphQLNamedType | None]] = [(operation.selection_set, root)]
    while todo:
        selection_set, parent = todo.pop()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name.startswith("__"):
                    continue  # __typename, and introspection: open to every key
                if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                    continue
                definition = parent.fields.get(name)
                if definition is None:
                    continue  # validation has answered it already
                if parent is root:
                    if role not in allowed_roles(operation.operation, name):
                        denied.add(name)
                else:
                    refused.update(
                        (owner.name, name)
                        for owner in _object_types(schema, parent)
                        if not rule.may_read(owner.name, name)
                    )
                if selection.selection_set is not None:
                    todo.append((selection.selection_set, get_named_type(definition.type)))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = schema.get_type(condition.name.value) if condition else parent
                todo.append((selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                spread = selection.name.value
                fragment = fragments.get(spread)
                if fragment is not None and spread not in entered:
                    entered.add(spread)
                    inner = schema.get_type(fragment.type_condition.name.value)
                    todo.append((fragment.selection_set, inner))
    return Rights(denied_roots=tuple(sorted(denied)), refused=frozenset(refused))


# (schema, document, operation, role) by identity -> the answer. Parsed
# documents are shared through the parser cache, so a repeated query finds
# its entry; the entry holds its schema and document, so no id is reused
# while it lives.
_answers: OrderedDict[tuple[int, int, int, Role], tuple[GraphQLSchema, DocumentNode, Rights]] = (
    OrderedDict()
)


def rights_for(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    role: Role,
) -> Rights:
    key = (id(schema), id(document), id(operation), role)
    known = _answers.get(key)
    if known is not None and known[0] is schema and known[1] is document:
        _answers.move_to_end(key)
        return known[2]
    rights = check_document(schema, document, operation, role)
    _answers[key] = (schema, document, rights)
    if len(_answers) > CACHE_SIZE:
        _answers.popitem(last=False)
    return rights


def _role(context: Any) -> Role | None:
    role = getattr(getattr(context, "key", None), "role", None)
    return role if isinstance(role, Role) else None


class RightsExecutor(PlainFieldsExecutor):
    """Strawberry's executor, built only for operations within the key's rights."""

    @classmethod
    def _build_unchecked(cls, *args: Any, **kwargs: Any) -> list[GraphQLError] | Executor[Any]:
        """graphql-core's build, making an executor of this class."""
        return super().build(*args, **kwargs)

    @classmethod
    def build(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        operation_name: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[GraphQLError] | Executor[Any]:
        arguments = (
            schema,
            document,
            root_value,
            context_value,
            raw_variable_values,
            operation_name,
            *args,
        )
        role = _role(context_value)
        if role is None:
            return [ClientError("A valid API key is required.", "UNAUTHENTICATED")]
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return cls._build_unchecked(*arguments, **kwargs)  # graphql-core names the problem
        rights = rights_for(schema, document, operation, role)
        # A subscription's own resolver refuses it: clients expect that
        # answer as the stream's first event, not as a protocol error.
        if rights.denied_roots and operation.operation != OperationType.SUBSCRIPTION:
            names = ", ".join(rights.denied_roots)
            return [forbidden(f"{role.a_key} may not use {names}.")]
        if not rights.refused:
            return cls._build_unchecked(*arguments, **kwargs)
        executor = FieldGuardExecutor._build_unchecked(*arguments, **kwargs)
        if isinstance(executor, FieldGuardExecutor):
            executor.role = role
            executor.refused = rights.refused
        return executor


class FieldGuardExecutor(RightsExecutor):
    """Answers each refused field with null and a FORBIDDEN error at its path."""

    role: Role
    refused: frozenset[tuple[str, str]] = frozenset()

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        name = field_details_list[0].node.name.value
        if (parent_type.name, name) not in self.refused:
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )
        definition = self.schema.get_field(parent_type, name)
        assert definition is not None  # it is in `refused`, so the walk found it
        error = forbidden(f"{self.role.a_key} may not read {parent_type.name}.{name}.")
        # Through graphql-core's own path: were the field non-null, the null
        # would move up to the nearest nullable parent, as for any error.
        self.handle_field_error(error, definition.type, field_details_list, path)
        return None
