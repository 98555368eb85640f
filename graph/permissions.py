"""Which role may call which root field, checked once per operation before anything runs."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from graph.errors import forbidden
from resolvers.shops import Role

READ = frozenset({Role.ADMIN, Role.STAFF, Role.READER})
WRITE = frozenset({Role.ADMIN, Role.STAFF})
ADMIN = frozenset({Role.ADMIN})

# Root fields whose roles differ from the default of their operation type
# (queries: READ, mutations: WRITE, subscriptions: READ).
ROOT_FIELD_ROLES: dict[str, frozenset[Role]] = {
    "orderRecord": frozenset({Role.ADMIN, Role.STAFF, Role.INGEST}),
    "contactFormSubmit": frozenset({Role.ADMIN, Role.STAFF, Role.PUBLIC}),
    "labelRename": ADMIN,
    "labelDelete": ADMIN,
    "contactErase": ADMIN,
    "contactDataExport": ADMIN,
}


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                yield from _root_fields(fragment.selection_set, fragments, seen)


def allowed_roles(operation: OperationType, field: str) -> frozenset[Role]:
    if field.startswith("__"):
        return frozenset(Role)  # introspection describes the API, not a shop's data
    default = WRITE if operation == OperationType.MUTATION else READ
    return ROOT_FIELD_ROLES.get(field, default)


class RootFieldPermissions(SchemaExtension):
    """Refuses a whole operation with FORBIDDEN when any root field is beyond the key's role."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        operation = get_operation_ast(document, ctx.operation_name) if document else None
        if document is not None and operation is not None:
            role = ctx.context.key.role
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            denied = [
                name
                for name in _root_fields(operation.selection_set, fragments, set())
                if role not in allowed_roles(operation.operation, name)
            ]
            if denied:
                ctx.result = ExecutionResult(
                    data=None,
                    errors=[
                        forbidden(
                            f"A {role.value} key may not use {', '.join(sorted(set(denied)))}."
                        )
                    ],
                )
        yield
