"""One plain attribute read per plain field, instead of Strawberry's generic path.

Most fields of a page (a contact's email, names, dates ...) have no resolver:
their value is an attribute of the object `from_doc` built. Strawberry
already skips the `Info` object for them, but still goes through three
nested calls per value (`_get_basic_result` -> `StrawberryField.get_result`
-> the configured default resolver). A page of 50 contacts resolves 800 of
them, so the schema gets a closure that reads the attribute directly: the
same result by the same `getattr`, in one call.

Only fields Strawberry itself compiled to its plain-attribute resolver are
touched (no resolver, no field extensions, no permission classes, not a
subscription); everything else keeps Strawberry's resolver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLObjectType
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

_STRAWBERRY_PLAIN_RESOLVER = "_get_basic_result"


def _attribute(name: str) -> Callable[..., Any]:
    def resolve(source: Any, info: Any) -> Any:
        return getattr(source, name)

    resolve._is_default = True  # type: ignore[attr-defined]  # as Strawberry marks it
    return resolve


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
                graphql_field.resolve = _attribute(field.python_name)
                swapped += 1
    return swapped
