"""The limits on one operation, to the edge: each bound on both sides, each refusal's exact words.

tests/test_limits.py and tests/test_cost.py tell the story through the API;
these pin the rules themselves without a server: the measures `analyse`
takes of a document, and what `check_limits` and `throttled` answer.
"""

from __future__ import annotations

import dataclasses

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLObjectType,
    GraphQLSchema,
    get_operation_ast,
    parse,
)
from graphql import build_schema as build_graphql_schema

from graph.limits import QueryShape, analyse, check_limits, throttled
from graph.schema import build_schema
from graph.settings import Settings
from resolvers.throttle import Bucket, ThrottleStatus

SCHEMA = build_schema()._schema
LIMITS = dataclasses.replace(
    Settings(), max_depth=4, max_aliases=2, cost_limit=100, throttle_bucket=200
)


def shape(query: str, variables: dict | None = None, operation: str | None = None) -> QueryShape:
    document = parse(query)
    definition = get_operation_ast(document, operation)
    assert definition is not None
    return analyse(SCHEMA, document, definition, variables)


def refusal(depth: int = 0, aliases: int = 0, cost: int = 0, settings: Settings = LIMITS):
    error = check_limits(QueryShape(depth, aliases, cost, 1), settings)
    return None if error is None else (error.message, error.extensions)


# --- the measures ------------------------------------------------------------------


def test_depth_counts_every_level_of_fields_but_introspections():
    assert shape("{ __typename }").depth == 0
    assert shape('{ contact(id: "x") { __typename } }').depth == 1
    assert shape('{ contact(id: "x") { id } }').depth == 2
    assert shape('{ contact(id: "x") { consent { history { state } } } }').depth == 4
    # The deepest branch decides, wherever it stands among its siblings.
    assert shape('{ contact(id: "x") { consent { history { state } } id } }').depth == 4
    assert shape('{ contact(id: "x") { id consent { history { state } } } }').depth == 4


def test_inline_fragments_add_no_level_of_their_own():
    inline = '{ contact(id: "x") { ... on Contact { consent { state } } } }'
    assert shape(inline).depth == shape('{ contact(id: "x") { consent { state } } }').depth == 3


def test_every_alias_counts_once_even_on_introspection():
    assert shape("{ __typename }").aliases == 0
    assert shape("{ a: __typename b: __typename }").aliases == 2
    assert shape("{ s: __schema { t: types { n: name } } }").aliases == 3
    assert shape('{ c: contact(id: "x") { e: email } }').aliases == 2


def test_introspection_is_free_whatever_it_asks():
    assert shape("{ __schema { types { name fields { name } } } }").cost == 0
    assert shape('{ __type(name: "Contact") { name } }').cost == 0


def test_a_connection_without_items_costs_only_its_read():
    assert shape("{ contacts(first: 50) { pageInfo { hasNextPage } } }").cost == 2 + 1
    assert shape("{ contacts(first: 50) { totalCount } }").cost == 2 + 25


def test_an_item_selecting_only_scalars_still_costs_one():
    assert shape("{ contacts(first: 3) { nodes { id } } }").cost == 3 * 1 + 2
    assert shape("{ contacts(first: 3) { edges { cursor } } }").cost == 3 * 1 + 2


def test_nodes_and_edges_together_are_priced_as_both():
    both = "{ contacts(first: 3) { nodes { id } edges { node { id } } } }"
    assert shape(both).cost == 3 * (1 + 1) + 2


def test_the_larger_of_first_and_last_is_priced():
    assert shape("{ contacts(first: 3, last: 7) { nodes { id } } }").cost == 7 + 2
    assert shape("{ contacts(first: 7, last: 3) { nodes { id } } }").cost == 7 + 2


def test_a_page_size_is_priced_between_nothing_and_the_largest_page():
    assert shape("{ contacts(first: 0) { nodes { id } } }").cost == 2
    assert shape("{ contacts(first: -5) { nodes { id } } }").cost == 2
    assert shape("{ contacts(first: 250) { nodes { id } } }").cost == 250 + 2
    assert shape("{ contacts(first: 251) { nodes { id } } }").cost == 250 + 2


def test_a_size_that_is_no_number_is_priced_as_the_largest_page():
    query = "query($n: Int) { contacts(first: $n) { nodes { id } } }"
    assert shape(query, {"n": True}).cost == 250 + 2
    assert shape(query, {"n": "5"}).cost == 250 + 2
    # A null size is no size: the field's own default of 50.
    assert shape(query, {"n": None}).cost == 50 + 2


def test_a_schema_default_page_size_is_clamped_like_an_asked_one():
    # Contact.orders' schema default is 20; an explicit null falls back to it too.
    assert shape('{ contact(id: "x") { orders { nodes { id } } } }').cost == 1 + 20 + 2
    assert shape('{ contact(id: "x") { orders(first: null) { nodes { id } } } }').cost == 23


def test_fields_and_fragments_of_one_selection_all_add_up():
    query = (
        '{ contact(id: "x") { consent { state } ... on Contact { totalSpent { amount } } ...Row } }'
        " fragment Row on Contact { averageOrderValue { amount } }"
    )
    assert shape(query).cost == 1 + 1 + 1 + 1
    # An item's cost adds up the same way across its fragments.
    items = (
        "{ contacts(first: 3) { nodes { id }"
        " ... on ContactConnection { edges { node { consent { state } } } } } }"
    )
    assert shape(items).cost == 3 * (1 + 2) + 2


# Sizes on a schema whose arguments have no defaults, or only one of first/last.
BARE = build_graphql_schema(
    """
    type Query {
      open(first: Int): ItemConnection
      seven(first: Int = 7): ItemConnection
      backwards(last: Int = 3): ItemConnection
    }
    type ItemConnection { nodes: [Item!]! }
    type Item { id: ID! }
    """
)


def bare_cost(query: str) -> int:
    document = parse(query)
    operation = get_operation_ast(document)
    assert operation is not None
    return analyse(BARE, document, operation).cost


def test_without_any_default_a_page_is_priced_as_the_largest():
    assert bare_cost("{ open { nodes { id } } }") == 250 + 2
    assert bare_cost("{ open(first: 4) { nodes { id } } }") == 4 + 2
    # The same field built in code rather than from SDL.
    item = GraphQLObjectType("Item", {"id": GraphQLField(GraphQLID)})
    connection = GraphQLObjectType("ItemConnection", {"nodes": GraphQLField(GraphQLList(item))})
    query = GraphQLObjectType(
        "Query", {"open": GraphQLField(connection, args={"first": GraphQLArgument(GraphQLInt)})}
    )
    document = parse("{ open { nodes { id } } }")
    operation = get_operation_ast(document)
    assert operation is not None
    assert analyse(GraphQLSchema(query), document, operation).cost == 250 + 2


def test_a_default_page_of_nothing_costs_only_the_read():
    item = GraphQLObjectType("Item", {"id": GraphQLField(GraphQLID)})
    connection = GraphQLObjectType("ItemConnection", {"nodes": GraphQLField(GraphQLList(item))})
    size = GraphQLArgument(GraphQLInt, default_value=0)
    query = GraphQLObjectType("Query", {"none": GraphQLField(connection, args={"first": size})})
    document = parse("{ none { nodes { id } } }")
    operation = get_operation_ast(document)
    assert operation is not None
    assert analyse(GraphQLSchema(query), document, operation).cost == 2


def test_a_default_of_first_or_of_last_alone_sizes_the_page():
    assert bare_cost("{ seven { nodes { id } } }") == 7 + 2
    assert bare_cost("{ backwards { nodes { id } } }") == 3 + 2


def test_a_variables_default_value_is_used_only_when_the_request_leaves_it_out():
    query = 'query($q: String = "ann") { contacts(first: 1, query: $q) { nodes { id } } }'
    assert shape(query).cost == 10 + 1 + 2
    assert shape(query, {"q": None}).cost == 1 + 2
    unset = "query($q: String) { contacts(first: 1, query: $q) { nodes { id } } }"
    assert shape(unset).cost == 1 + 2


def test_a_mutation_is_ten_plus_its_payload_and_a_query_field_is_not():
    create = 'mutation { contactCreate(input: {email: "a@example.com"}) { contact { id } } }'
    assert shape(create).cost == 10 + 1
    assert shape('{ contact(id: "x") { id } }').cost == 1


def test_the_named_operation_is_the_one_measured():
    document = (
        'query Small { contact(id: "x") { id } } '
        "query Large { contacts(first: 100) { nodes { id } } }"
    )
    assert shape(document, operation="Small").cost == 1
    assert shape(document, operation="Large").cost == 102


def test_a_fragment_spread_twice_in_one_selection_counts_once_and_in_two_counts_twice():
    fragment = " fragment Row on Contact { consent { state } }"
    once = '{ contact(id: "x") { ...Row ...Row } }' + fragment
    assert shape(once).cost == 1 + 1
    twice = '{ a: contact(id: "x") { ...Row } b: contact(id: "y") { ...Row } }' + fragment
    assert shape(twice).cost == 2 * (1 + 1)


def test_a_fragment_spreading_an_unknown_fragment_costs_what_it_knows():
    # Validation refuses the unknown spread; the walk itself must not fail on it.
    query = '{ contact(id: "x") { ...Row } } fragment Row on Contact { id ...Missing }'
    assert shape(query).cost == 1


def test_nested_fragments_cost_what_they_spread():
    query = (
        '{ contact(id: "x") { ...Outer } } '
        "fragment Outer on Contact { ...Inner consent { state } } "
        "fragment Inner on Contact { totalSpent { amount } }"
    )
    assert shape(query).cost == 1 + 1 + 1
    assert shape(query).depth == 3


def test_each_fragment_is_walked_once_however_often_and_wherever_it_is_spread():
    fragments = (
        " fragment A on Contact { consent { state } }"
        " fragment B on Contact { ...A totalSpent { amount } }"
    )
    # The operation's selection set, each contact's, and each fragment once.
    twice = '{ a: contact(id: "x") { ...A } b: contact(id: "y") { ...A } }'
    assert shape(twice + fragments).selection_sets_walked == 1 + 2 + 2
    nested = '{ a: contact(id: "x") { ...A ...B } }'
    assert shape(nested + fragments).selection_sets_walked == 1 + 1 + 2 + 2


def test_a_fragment_spread_again_does_not_stop_the_ones_after_it():
    query = (
        '{ a: contact(id: "x") { ...B } b: contact(id: "y") { ...A } c: contact(id: "z") { ...A } }'
        " fragment A on Contact { consent { state } }"
        " fragment B on Contact { totalSpent { amount } averageOrderValue { amount } }"
    )
    assert shape(query).cost == (1 + 2) + (1 + 1) + (1 + 1)


def test_an_unknown_fragment_at_the_root_costs_nothing():
    # Validation refuses it; the walk must not fail on it.
    assert shape('{ ...Missing contact(id: "x") { id } }').cost == 1


def test_an_inline_fragment_prices_its_fields_on_the_type_it_names():
    # On an interface, the fragment's type decides what a field is: here a connection.
    node = '{ node(id: "x") { ... on Contact { orders(first: 5) { nodes { id } } } } }'
    assert shape(node).cost == 1 + 5 * 1 + 2
    # Without a type condition, the fragment stays on its parent's type.
    plain = '{ contact(id: "x") { ... { orders(first: 5) { nodes { id } } } } }'
    assert shape(plain).cost == 1 + 5 * 1 + 2


# --- the refusals ------------------------------------------------------------------


def test_the_depth_limit_itself_is_allowed_and_one_more_is_refused():
    assert refusal(depth=4) is None
    assert refusal(depth=5) == (
        "The query is 5 levels deep; at most 4 are allowed.",
        {"code": "QUERY_TOO_DEEP"},
    )


def test_the_alias_limit_itself_is_allowed_and_one_more_is_refused():
    assert refusal(aliases=2) is None
    assert refusal(aliases=3) == (
        "The query uses more than 2 aliases.",
        {"code": "TOO_MANY_ALIASES"},
    )


def test_the_cost_limit_itself_is_allowed_and_one_point_more_is_refused():
    assert refusal(cost=100) is None
    assert refusal(cost=101) == (
        "The query costs 101 points; at most 100 are allowed.",
        {"code": "MAX_COST_EXCEEDED", "cost": 101, "maximumCost": 100},
    )


def test_a_bucket_smaller_than_the_cost_limit_is_the_limit():
    small_bucket = dataclasses.replace(LIMITS, throttle_bucket=60)
    assert refusal(cost=60, settings=small_bucket) is None
    assert refusal(cost=61, settings=small_bucket) == (
        "The query costs 61 points; at most 60 are allowed.",
        {"code": "MAX_COST_EXCEEDED", "cost": 61, "maximumCost": 60},
    )


def test_a_one_point_query_over_a_zero_limit_speaks_of_one_point():
    nothing = dataclasses.replace(LIMITS, cost_limit=0)
    assert refusal(cost=1, settings=nothing) == (
        "The query costs 1 point; at most 0 are allowed.",
        {"code": "MAX_COST_EXCEEDED", "cost": 1, "maximumCost": 0},
    )


def test_depth_is_checked_before_aliases_and_aliases_before_cost():
    assert refusal(depth=5, aliases=3, cost=101)[1]["code"] == "QUERY_TOO_DEEP"
    assert refusal(depth=4, aliases=3, cost=101)[1]["code"] == "TOO_MANY_ALIASES"
    assert refusal(depth=4, aliases=2, cost=101)[1]["code"] == "MAX_COST_EXCEEDED"


@pytest.mark.parametrize(
    ("cost", "available", "rate", "message", "retry"),
    [
        (
            30,
            10.9,
            100.0,
            "Throttled: the query costs 30 points and 10 are available; "
            "100 come back every second.",
            1,
        ),
        (
            1,
            0.5,
            0.25,
            "Throttled: the query costs 1 point and 0 are available; 0.25 come back every second.",
            2,
        ),
        (
            500,
            0.0,
            50.0,
            "Throttled: the query costs 500 points and 0 are available; 50 come back every second.",
            4,
        ),
    ],
)
def test_a_throttled_request_learns_what_it_costs_and_when_to_retry(
    cost, available, rate, message, retry
):
    status = ThrottleStatus(False, cost, available, Bucket(200, rate))
    error = throttled(status)
    assert error.message == message
    # A cost above the whole bucket waits for a full bucket, not for its own cost.
    assert error.extensions == {"code": "THROTTLED", "retryAfter": retry}
