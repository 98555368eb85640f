"""Plain fields read as plainly as possible: one attribute read each, leaves straight to the wire.

Most fields of a page (a contact's email, names, dates ...) have no resolver:
their value is an attribute of the object `from_doc` built. A page of 50
contacts has 800 of them, so what each costs is most of what a page costs.

- `use_attribute_resolvers` gives each such field a resolver that reads the
  attribute directly, instead of Strawberry's three nested calls per value
  (`_get_basic_result` -> `StrawberryField.get_result` -> the default
  resolver). Only fields Strawberry itself compiled to its plain-attribute
  resolver are touched (no resolver, no arguments, no field extensions, no
  permission classes, not a subscription); everything else keeps
  Strawberry's resolver.
- `PlainFieldsExecutor` answers those whose type is a scalar or an enum
  without graphql-core's generic path: no `info` object, no argument
  coercion, no middleware, no awaitable checks, no completion dispatch; the
  attribute, then the type's own output coercion. `__typename`, which
  Apollo clients add to every selection, is the type's name, as
  graphql-core answers it. Anything out of the ordinary on the way (null
  for a non-null field, an exception, a value the type refuses) goes down
  graphql-core's path instead, which reads the same attribute again and
  reports it exactly as it always does. It also drops Strawberry's
  middleware manager when no extension resolves per field (an empty
  manager still wraps every resolver).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

_STRAWBERRY_PLAIN_RESOLVER = "_get_basic_result"


class Leaf:
    """How a plain scalar or enum field is answered: attribute, output coercion, nullability."""

    __slots__ = ("coerce", "name", "nullable")

    def __init__(self, name: str, coerce: Callable[[Any], Any], nullable: bool) -> None:
        self.name = name
        self.coerce = coerce
        self.nullable = nullable


def _attribute(name: str) -> Callable[..., Any]:
    def resolve(source: Any, info: Any) -> Any:
        return getattr(source, name)

    resolve._is_default = True  # type: ignore[attr-defined]  # as Strawberry marks it
    return resolve


def _enum_coercion(enum_type: GraphQLEnumType) -> Callable[[Any], Any]:
    """The type's own coercion, with its Python enum's members looked up in a dict first.

    Strawberry's enum type finds a member's name by scanning the type's
    values on every call (the first whose value equals the member's); the
    answer for each member never changes, so it is worked out once here.
    """
    general = enum_type.coerce_output_value
    wrapped = getattr(enum_type, "wrapped_cls", None)
    if wrapped is None:
        return general
    names: dict[Any, str] = {}
    for member in wrapped:
        for name, value in enum_type.values.items():
            if member.value == value.value:
                names[member] = name
                break

    def coerce(value: Any) -> Any:
        if type(value) is wrapped:
            name = names.get(value)
            if name is not None:
                return name
        return general(value)

    return coerce


def _leaf(name: str, field_type: Any) -> Leaf | None:
    nullable = not isinstance(field_type, GraphQLNonNull)
    named = field_type if nullable else field_type.of_type
    if isinstance(named, GraphQLEnumType):
        return Leaf(name, _enum_coercion(named), nullable)
    if isinstance(named, GraphQLScalarType):
        return Leaf(name, named.coerce_output_value, nullable)
    return None  # a list or an object: graphql-core completes it


def use_attribute_resolvers(schema: strawberry.Schema) -> int:
    """Swap every plain field's resolver for a direct attribute read; returns how many."""
    if schema.config.default_resolver is not getattr:
        return 0  # a custom default resolver must keep running
    swapped = 0
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for graphql_field in graphql_type.fields.values():
            field = (graphql_field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            resolve = graphql_field.resolve
            if (
                isinstance(field, StrawberryField)
                and field.is_basic_field
                and not field.is_subscription
                and not field.arguments
                and getattr(resolve, "__name__", None) == _STRAWBERRY_PLAIN_RESOLVER
            ):
                attribute = _attribute(field.python_name)
                # Read by PlainFieldsExecutor; None for lists and objects.
                attribute.leaf = _leaf(field.python_name, graphql_field.type)  # type: ignore[attr-defined]
                graphql_field.resolve = attribute
                swapped += 1
    return swapped


class PlainFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, with plain scalar and enum fields answered directly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        if manager is not None and not manager.middlewares:
            self.middleware_manager = None

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        name = field_details_list[0].node.name.value
        field_def = parent_type.fields.get(name)
        if field_def is None:
            if name == "__typename":  # what graphql-core's meta field resolves to
                return parent_type.name
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )
        leaf = getattr(field_def.resolve, "leaf", None)
        if leaf is not None:
            try:
                value = getattr(source, leaf.name)
                if value is None or value is Undefined:
                    if leaf.nullable:
                        return None
                elif not isinstance(value, Exception):
                    coerced = leaf.coerce(value)
                    if coerced is not None and coerced is not Undefined:
                        return coerced
            except Exception:  # noqa: BLE001, S110 - graphql-core's path below reports it
                pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
