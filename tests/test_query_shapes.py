"""The limits' analysis is remembered per document and page sizes, and always what a fresh one says."""

from __future__ import annotations

import graphql
import pytest

from graph import limits, query_shapes
from graph.query_shapes import shape_of
from graph.schema import build_schema

SCHEMA = build_schema()._schema

PAGE = """
query Page($first: Int, $query: String, $orders: Int = 3, $kinds: [ActivityKind!]) {
  contacts(first: $first, query: $query) {
    totalCount
    nodes {
      ...Person
      orders(first: $orders) { nodes { id status } }
      activity(first: 5, kinds: $kinds) { nodes { id kind } }
    }
  }
}
fragment Person on Contact { id email displayName }
"""

SIZES = [
    {},
    {"first": 10},
    {"first": 50, "orders": 1},
    {"first": 250, "orders": 20},
    {"first": None, "orders": None},
    {"first": "ten"},
    {"first": True},
    {"first": 10_000},
    {"first": 10, "kinds": ["NOTE"]},
    {"first": 10, "kinds": None},
]


@pytest.fixture
def analyses(monkeypatch):
    """Counts the walks over the document (fresh analyses)."""
    calls = []
    original = limits.analyse

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(limits, "analyse", counting)
    monkeypatch.setattr(query_shapes, "_known", query_shapes.OrderedDict())
    return calls


def parsed(text: str) -> tuple[graphql.DocumentNode, graphql.OperationDefinitionNode]:
    document = graphql.parse(text)
    assert not graphql.validate(SCHEMA, document)
    operation = graphql.get_operation_ast(document)
    assert operation is not None
    return document, operation


@pytest.mark.parametrize("variables", SIZES)
def test_a_remembered_shape_is_the_one_a_fresh_analysis_gives(analyses, variables):
    document, operation = parsed(PAGE)
    for other in SIZES:  # every other request first, so the answer may come from memory
        shape_of(SCHEMA, document, operation, other)

    remembered = shape_of(SCHEMA, document, operation, variables)

    assert remembered == limits.analyse(SCHEMA, document, operation, variables)


def test_the_same_document_and_sizes_are_analysed_once(analyses):
    document, operation = parsed(PAGE)

    first = shape_of(SCHEMA, document, operation, {"first": 50, "query": "ann"})
    again = shape_of(SCHEMA, document, operation, {"first": 50, "query": "bob"})
    bigger = shape_of(SCHEMA, document, operation, {"first": 100, "query": "ann"})

    # The query text costs nothing, so it is not part of what is remembered.
    assert again is first
    assert bigger.cost > first.cost
    assert len(analyses) == 2


def test_another_document_with_the_same_text_is_analysed_again(analyses):
    one, operation_one = parsed(PAGE)
    two, operation_two = parsed(PAGE)

    shape_of(SCHEMA, one, operation_one, {"first": 5})
    shape_of(SCHEMA, two, operation_two, {"first": 5})

    assert len(analyses) == 2
