"""What a query costs before it runs, how clients read it, and the limit on one operation."""

from __future__ import annotations

import dataclasses
import inspect

import httpx
import pytest
from asgi_lifespan import LifespanManager
from conftest import SHOP, Api
from graphql import get_operation_ast, parse

import loaders.keyset
from graph import cost
from graph.http.app import create_app
from graph.limits import analyse
from graph.schema import build_schema
from graph.settings import Settings
from resolvers.shops import Role, create_key

SCHEMA = build_schema()._schema


def cost_of(query: str, variables: dict | None = None) -> int:
    document = parse(query)
    operation = get_operation_ast(document)
    assert operation is not None
    return analyse(SCHEMA, document, operation, variables).cost


# --- the model ----------------------------------------------------------------


def test_scalars_and_enums_are_free_and_objects_cost_one():
    assert cost_of('{ contact(id: "x") { id email kind } }') == 1
    assert cost_of('{ contact(id: "x") { id totalSpent { amount } consent { state } } }') == 3
    assert cost_of("{ __typename }") == 0


def test_a_connection_is_its_page_size_times_one_item_plus_two():
    assert cost_of("{ contacts(first: 10) { nodes { id } } }") == 10 * 1 + 2
    assert cost_of("{ contacts(last: 10) { nodes { id } } }") == 10 * 1 + 2
    # An item costs what its selection costs: the contact and its money object.
    assert cost_of("{ contacts(first: 10) { nodes { id totalSpent { amount } } } }") == 10 * 2 + 2
    # edges { node } is the same item as nodes; the cursor is free.
    assert cost_of("{ contacts(first: 10) { edges { cursor node { id } } } }") == 10 * 1 + 2
    # pageInfo is one object for the page; a count of the whole list is declared.
    page_info = "{ contacts(first: 10) { pageInfo { hasNextPage } } }"
    assert cost_of(page_info) == 2 + 1
    assert cost_of("{ contacts(first: 10) { totalCount } }") == 2 + 25


def test_nested_connections_multiply():
    # 50 contacts, each with 20 orders (Contact.orders' default page).
    query = "{ contacts(first: 50) { nodes { id orders { nodes { id } } } } }"
    assert cost_of(query) == 50 * (1 + (20 * 1 + 2)) + 2


def test_page_sizes_come_from_variables_and_their_defaults():
    query = "query($n: Int) { contacts(first: $n) { nodes { id } } }"
    assert cost_of(query, {"n": 5}) == 5 + 2
    assert cost_of(query, {"n": 250}) == 250 + 2
    with_default = "query($n: Int = 7) { contacts(first: $n) { nodes { id } } }"
    assert cost_of(with_default) == 7 + 2
    assert cost_of(with_default, {"n": 3}) == 3 + 2


def test_without_a_size_the_fields_default_page_is_priced():
    # contacts: the list's own default of 50 (its schema default is null).
    assert cost_of("{ contacts { nodes { id } } }") == 50 + 2
    default_size = inspect.signature(loaders.keyset.find_page).parameters["default_size"].default
    assert cost.FIELD_COSTS["Query", "contacts"].default_size == default_size
    # Contact.orders: its schema default of 20.
    assert cost_of('{ contact(id: "x") { orders { nodes { id } } } }') == 1 + 20 + 2


def test_sizes_outside_the_allowed_range_are_priced_at_the_largest_page():
    # The field refuses them itself (BAD_USER_INPUT); the price never overflows.
    assert cost_of("{ contacts(first: 100000) { nodes { id } } }") == 250 + 2
    assert cost_of("query($n: Int) { contacts(first: $n) { nodes { id } } }", {"n": "x"}) == 252


def test_mutations_cost_ten_plus_what_they_return():
    create = 'mutation { contactCreate(input: {email: "a@example.com"}) { contact { id } } }'
    assert cost_of(create) == 10 + 1
    bare = 'mutation { contactCreate(input: {email: "a@example.com"}) { userErrors { code } } }'
    assert cost_of(bare) == 10 + 1
    rename = 'mutation { labelRename(name: "a", newName: "b") { label { name } } }'
    assert cost_of(rename) == 10 + 100 + 1  # every contact with the label is rewritten
    delete = 'mutation { labelDelete(name: "a") { deletedName } }'
    assert cost_of(delete) == 10 + 100  # as is every contact with a deleted label
    bulk = 'mutation { contactsLabel(selection: {}, add: ["VIP"]) { modified } }'
    assert cost_of(bulk) == 10 + 100  # and every contact the selection names


def test_the_expensive_fields_declare_what_they_do():
    assert cost_of("{ contactStats { contacts } }") == 200 + 1
    assert cost_of("{ contactStats { contacts topLabels { name } } }") == 200 + 1 + 1
    # Three aggregations over the shop, then `first` groups (default 20) read back.
    assert cost_of("{ duplicateCandidates { reason contacts { id } } }") == 300 + 20 * 2
    assert cost_of("{ duplicateCandidates(first: 100) { reason } }") == 300 + 100 * 1
    # Priced as 20 segments, each counting its contacts.
    assert cost_of("{ segments { id contactCount } }") == 20 * (1 + 25)
    assert cost_of("{ segments { id } }") == 20
    assert cost_of('{ contactDataExport(id: "x") }') == 100
    # Free-text search adds to the page; a null query adds nothing.
    assert cost_of('{ contacts(first: 5, query: "ann") { nodes { id } } }') == 10 + 5 + 2
    assert cost_of("{ contacts(first: 5, query: null) { nodes { id } } }") == 5 + 2
    searched = "query($q: String) { contacts(first: 5, query: $q) { nodes { id } } }"
    assert cost_of(searched, {"q": "ann"}) == 10 + 5 + 2
    assert cost_of(searched, {}) == 5 + 2


def test_fragments_cost_what_their_fields_cost_and_a_repeated_spread_counts_once():
    inline = "{ contacts(first: 5) { nodes { id totalSpent { amount } } } }"
    spread = (
        "{ contacts(first: 5) { ...Page } } "
        "fragment Page on ContactConnection { nodes { ...Row ...Row } } "
        "fragment Row on Contact { id totalSpent { amount } }"
    )
    assert cost_of(spread) == cost_of(inline) == 5 * 2 + 2
    # Aliases are fields of their own: each one is priced.
    assert cost_of("{ a: contactStats { contacts } b: contactStats { contacts } }") == 2 * 201


def test_the_products_own_pages_fit_under_the_default_limit():
    limit = Settings().cost_limit
    pages = {
        # The contacts list as the admin app shows it.
        "list": (
            "{ contacts(first: 50, sortKey: NAME) { totalCount pageInfo { hasNextPage endCursor }"
            " nodes { id email displayName kind labels orderCount totalSpent { amount currencyCode }"
            " lastOrderAt consent { state } } } }"
        ),
        # A page of contacts with their latest orders.
        "list with orders": (
            "{ contacts(first: 50) { nodes { id email"
            " orders(first: 5) { nodes { externalId total { amount } } } } } }"
        ),
        # The contact page (bench/contact_page.py).
        "contact page": (
            'query { contact(id: "x") { id email displayName orderCount totalSpent { amount }'
            " consent { state optInLevel }"
            " activity(first: 50) { totalCount pageInfo { hasNextPage endCursor }"
            " nodes { id kind at author text order { id externalId status } } }"
            " orders(first: 5) { nodes { id externalId placedAt status total { amount } } } } }"
        ),
        "reporting": "{ contactStats { contacts customers totalRevenue { amount } } segments { name contactCount } }",
        "duplicates": "{ duplicateCandidates { reason contactCount contacts { id email } } }",
    }
    costs = {name: cost_of(query) for name, query in pages.items()}
    assert all(c <= limit for c in costs.values()), costs
    assert costs["list"] == 50 * 3 + 2 + 1 + 25


# --- over HTTP --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def default_app(settings: Settings, served):
    """The app with the production limits: a cost limit of 1,000 and a bucket of 2,000."""
    production = Settings()
    app = create_app(
        dataclasses.replace(
            settings,
            cost_limit=production.cost_limit,
            throttle_bucket=production.throttle_bucket,
            throttle_restore=production.throttle_restore,
        )
    )
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture
async def default_api(default_app, keys) -> Api:
    transport = httpx.ASGITransport(app=default_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, keys["ADMIN"])


async def test_every_response_announces_its_cost(default_api):
    body = await default_api.gql("{ contacts(first: 10) { nodes { id } } }")
    assert body["data"] == {"contacts": {"nodes": []}}
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 12,
        "actualQueryCost": 12,
        "throttleStatus": {
            "maximumAvailable": 2000,
            "currentlyAvailable": 1988,
            "restoreRate": 100,
        },
    }


async def test_refused_requests_announce_a_cost_of_zero_and_the_budget(default_api):
    for query, code in (
        ("{ contacts { ", "GRAPHQL_PARSE_FAILED"),
        ("{ contacts { nope } }", "GRAPHQL_VALIDATION_FAILED"),
    ):
        body = await default_api.gql(query)
        assert body["errors"][0]["extensions"]["code"] == code
        cost_extension = body["extensions"]["cost"]
        assert cost_extension["requestedQueryCost"] == 0
        assert cost_extension["actualQueryCost"] == 0
        assert cost_extension["throttleStatus"]["currentlyAvailable"] == 2000


async def test_a_query_over_the_limit_is_refused_before_it_runs(default_api, commands):
    # 50 contacts with 20 orders each: 1,152 points.
    query = "{ contacts(first: 50) { nodes { id orders { nodes { id } } } } }"
    commands.reset()
    body = await default_api.gql(query)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"] == "The query costs 1152 points; at most 1000 are allowed."
    assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 1152, "maximumCost": 1000}
    assert body["extensions"]["cost"]["requestedQueryCost"] == 1152
    assert body["extensions"]["cost"]["actualQueryCost"] == 0
    # Nothing was charged and no contact or order was read.
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000
    assert commands.on("contacts") == commands.on("orders") == []
    # Asking for fewer orders fits.
    fewer = "{ contacts(first: 50) { nodes { id orders(first: 5) { nodes { id } } } } }"
    assert (await default_api.data(fewer)) == {"contacts": {"nodes": []}}


async def test_the_limit_uses_the_requests_variables(default_api):
    query = (
        "query($n: Int!) { contacts(first: 50) { nodes { orders(first: $n) { nodes { id } } } } }"
    )
    assert "errors" not in await default_api.gql(query, {"n": 5})
    body = await default_api.gql(query, {"n": 20})
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


async def test_the_operation_named_in_a_document_of_several_is_the_one_priced(default_api):
    document = (
        "query Small { contacts(first: 1) { nodes { id } } } "
        "query Large { contacts(first: 50) { nodes { id orders { nodes { id } } } } }"
    )

    async def run(name: str) -> dict:
        response = await default_api.client.post(
            "/graphql",
            json={"query": document, "operationName": name},
            headers=default_api.headers(),
        )
        return response.json()

    small = await run("Small")
    assert small["data"] == {"contacts": {"nodes": []}}
    assert small["extensions"]["cost"]["requestedQueryCost"] == 1 + 2
    large = await run("Large")
    assert large["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert large["extensions"]["cost"]["requestedQueryCost"] == 1152


async def test_a_request_without_variables_prices_their_defaults(default_api):
    response = await default_api.client.post(
        "/graphql",
        json={"query": "query($n: Int = 3) { contacts(first: $n) { nodes { id } } }"},
        headers=default_api.headers(),
    )
    body = response.json()
    assert body["data"] == {"contacts": {"nodes": []}}
    assert body["extensions"]["cost"]["requestedQueryCost"] == 3 + 2


async def test_a_mutation_over_the_limit_writes_nothing(default_api, database):
    await default_api.data(
        'mutation { contactCreate(input: {email: "a@example.com"}) { contact { id } } }'
    )
    # Ten shop-wide label writes: 10 × (10 + 100 + 1) points.
    renames = " ".join(
        f'r{i}: labelRename(name: "l{i}", newName: "m{i}") {{ label {{ name }} }}'
        for i in range(10)
    )
    adds = 'add: contactsLabel(selection: {}, add: ["VIP"]) { modified }'
    body = await default_api.gql(f"mutation {{ {adds} {renames} }}")
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert await database.contacts.count_documents({"labels": "VIP"}) == 0


async def test_the_cost_is_the_same_for_every_role_that_may_ask(default_app, keys, database):
    transport = httpx.ASGITransport(app=default_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        _, reader_key = await create_key(database, SHOP, Role.READER, "Report")
        reader = Api(client, reader_key)
        body = await reader.gql("{ contactStats { contacts } }")
    assert body["data"] == {"contactStats": {"contacts": 0}}
    assert body["extensions"]["cost"]["requestedQueryCost"] == 201
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000 - 201
