"""The limits' analysis of an operation, worked out once per document and page sizes.

`graph.limits.analyse` walks the whole operation, which costs about as much
as executing a small page. Its answer depends on the document, the
operation, and of the variables only on the few it reads (page sizes, and
whether cost-bearing arguments are given): a repeated query (the parser
cache hands back the same document object) with the same sizes gets the
answer it got before.

The first analysis of a document records which variables the walk read;
later requests are looked up by those variables' values, reduced to what
the walk can tell apart (an integer by its value; null; absent; anything
else as merely present).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, GraphQLSchema, OperationDefinitionNode

if TYPE_CHECKING:
    from graph.limits import QueryShape

DOCUMENTS = 1024  # documents remembered, least recently used dropped first
SIZES_PER_DOCUMENT = 32  # distinct variable values remembered per document

_ABSENT = ("absent",)
_PRESENT = ("present",)


class _Reading(Mapping[str, Any]):
    """The request's variables, noting every name the walk looks at."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return self.variables[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self.variables

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def __bool__(self) -> bool:
        return True  # `analyse` takes an empty mapping for none at all and reads that instead


def _told_apart(variables: Mapping[str, Any], name: str) -> Any:
    if name not in variables:
        return _ABSENT
    value = variables[name]
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _PRESENT


class _Known:
    __slots__ = ("document", "names", "schema", "shapes")

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, names: tuple[str, ...]
    ) -> None:
        # Held so that the ids in the key are never reused while the entry lives.
        self.schema = schema
        self.document = document
        self.names = names
        self.shapes: dict[tuple[Any, ...], QueryShape] = {}


_known: OrderedDict[tuple[int, int, int], _Known] = OrderedDict()


def shape_of(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
) -> QueryShape:
    """`analyse(...)`, remembered per document and the values of the variables it reads."""
    key = (id(schema), id(document), id(operation))
    known = _known.get(key)
    if known is not None and known.schema is schema and known.document is document:
        _known.move_to_end(key)
        sizes = tuple(_told_apart(variables, name) for name in known.names)
        found = known.shapes.get(sizes)
        if found is not None:
            return found
    from graph.limits import analyse  # graph.limits asks this module first

    reading = _Reading(variables)
    shape = analyse(schema, document, operation, reading)
    if known is None or known.schema is not schema or known.document is not document:
        known = _Known(schema, document, tuple(sorted(reading.read)))
        _known[key] = known
        if len(_known) > DOCUMENTS:
            _known.popitem(last=False)
    if len(known.shapes) < SIZES_PER_DOCUMENT:
        known.shapes[tuple(_told_apart(variables, name) for name in known.names)] = shape
    return shape
