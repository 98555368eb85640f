"""What one request may ask for, how the HTTP surface answers, and what a failure reveals."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import httpx
import pytest
from asgi_lifespan import LifespanManager
from conftest import Api
from graphql import get_operation_ast, parse

from graph.errors import MASKED_MESSAGE
from graph.http.app import create_app
from graph.limits import analyse
from graph.schema import build_schema
from graph.settings import Settings

CONTACTS = "{ contacts { totalCount } }"


@pytest.fixture(scope="module")
async def strict_app(settings: Settings, served):
    """The app with small limits, so that limits can be reached with today's schema."""
    tight = dataclasses.replace(settings, max_depth=4, max_aliases=2, max_tokens=60)
    app = create_app(tight)
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture
async def strict(strict_app, keys) -> Api:
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, keys["ADMIN"])


def only_error(body: dict, code: str) -> dict:
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == code
    return error


async def test_depth_is_limited(strict):
    ok = await strict.data("{ contacts { nodes { consent { state } } } }")
    assert ok == {"contacts": {"nodes": []}}
    error = only_error(
        await strict.gql("{ contacts { nodes { consent { history { state } } } } }"),
        "QUERY_TOO_DEEP",
    )
    assert error["message"] == "The query is 5 levels deep; at most 4 are allowed."
    # Fragments and inline fragments count where they are used.
    via_fragment = await strict.gql(
        "{ contacts { ...C } } "
        "fragment C on ContactConnection {"
        " nodes { ... on Contact { consent { history { at } } } } }"
    )
    only_error(via_fragment, "QUERY_TOO_DEEP")


async def test_default_depth_is_ten(api):
    assert Settings().max_depth == 10
    # contacts > nodes > orders > nodes > contact > … : 12 levels, every one of them real.
    hop = "orders(first: 1) { nodes { contact { "
    deep = "{ contacts(first: 1) { nodes { " + hop * 3 + "id" + " } } }" * 3 + " } } }"
    error = only_error(await api.gql(deep), "QUERY_TOO_DEEP")
    assert error["message"] == "The query is 12 levels deep; at most 10 are allowed."
    ten = "{ contacts(first: 1) { nodes { " + hop * 2 + "id" + " } } }" * 2 + " } } }"
    assert await api.data(ten) == {"contacts": {"nodes": []}}


def fragment_bomb(levels: int) -> str:
    """Each fragment spreads the next three times: naive expansion is 3**levels spreads."""
    fragments = [
        f"fragment P{i} on Query {{ ...P{i + 1} ...P{i + 1} ...P{i + 1} }}" for i in range(levels)
    ]
    return " ".join(
        ["query { ...P0 }", *fragments, f"fragment P{levels} on Query {{ __typename }}"]
    )


def test_the_checks_walk_each_fragment_once():
    schema = build_schema()._schema
    for levels in (10, 14, 18, 30):
        document = parse(fragment_bomb(levels))
        shape = analyse(schema, document, get_operation_ast(document))
        # The operation's selection set and each fragment's, once: linear, not 3**levels.
        assert shape.selection_sets_walked == levels + 2
        assert (shape.depth, shape.aliases, shape.cost) == (0, 0, 0)


async def test_a_fragment_bomb_from_a_public_key_is_answered_at_once(as_role, http):
    public = as_role("PUBLIC")
    for levels in (10, 14, 18, 30):
        started = time.perf_counter()
        body = await public.gql(fragment_bomb(levels))
        elapsed = time.perf_counter() - started
        assert body["data"] == {"__typename": "Query"}
        # A guard against a hang, not a benchmark (bench/query_checks.py measures it).
        assert elapsed < 2, f"{levels} levels took {elapsed:.1f} s"
    # Meanwhile the server answers everyone else.
    bomb = asyncio.create_task(public.gql(fragment_bomb(30)))
    started = time.perf_counter()
    health = await http.get("/healthz")
    assert health.status_code == 200
    assert time.perf_counter() - started < 2
    assert (await bomb)["data"] == {"__typename": "Query"}


def test_depth_and_aliases_count_through_fragments_once():
    schema = build_schema()._schema
    document = parse(
        "{ contacts { ...Page ...Page } } "
        "fragment Page on ContactConnection { n: nodes { ...Row } e: edges { node { ...Row } } } "
        "fragment Row on Contact { c: consent { state } }"
    )
    shape = analyse(schema, document, get_operation_ast(document))
    # contacts > edges > node > consent > state
    assert shape.depth == 5
    # Each aliased field of the document once, wherever its fragment is spread.
    assert shape.aliases == 3


async def test_aliases_are_limited(api, strict):
    ok = await strict.data("{ a: __typename b: __typename }")
    assert ok == {"a": "Query", "b": "Query"}
    only_error(
        await strict.gql("{ a: __typename b: __typename c: __typename }"), "TOO_MANY_ALIASES"
    )
    thirty = "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }"
    assert len(await api.data(thirty)) == 30
    error = only_error(await api.gql(thirty.replace("}", "a30: __typename }")), "TOO_MANY_ALIASES")
    assert "30 aliases" in error["message"]


async def test_tokens_are_limited(api, strict):
    error = only_error(await strict.gql("{ " + "__typename " * 60 + "}"), "QUERY_TOO_COMPLEX")
    assert "tokens" in error["message"]
    assert await api.data("{ " + "__typename " * 400 + "}") == {"__typename": "Query"}
    many = "{ " + "__typename " * 5000 + "}"
    assert "tokens" in only_error(await api.gql(many), "QUERY_TOO_COMPLEX")["message"]


async def test_documents_too_costly_to_validate_are_refused(api):
    # Under the token limit, but thousands of overlapping fields: graphql-core gives up.
    body = await api.gql("{ " + "__typename " * 4000 + "}")
    error = only_error(body, "QUERY_TOO_COMPLEX")
    assert error["message"] == "The query is too complex to check; ask for fewer fields."


async def test_a_body_over_one_megabyte_is_413(http, keys, database):
    headers = {"Authorization": f"Bearer {keys['ADMIN']}", "content-type": "application/json"}
    create = 'mutation { contactCreate(input: {email: "big@example.com"}) { contact { id } } }'
    mutation = json.dumps({"query": create})
    just_under = mutation + " " * (1_000_000 - len(mutation))
    response = await http.post("/graphql", content=just_under.encode(), headers=headers)
    assert response.status_code == 200, response.text
    assert await database.contacts.count_documents({}) == 1

    over = mutation.replace("big@", "bigger@") + " " * 1_000_000
    response = await http.post("/graphql", content=over.encode(), headers=headers)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: counted as it arrives
        yield over[:600_000].encode()
        yield over[600_000:].encode()

    response = await http.post("/graphql", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await database.contacts.count_documents({}) == 1


async def test_unexpected_errors_are_masked_and_logged(api, monkeypatch, caplog):
    import graph.types.contact

    async def broken(database, match):
        raise RuntimeError("lost mongodb://admin:hunter2@db.internal:27017/contactgraph")

    monkeypatch.setattr(graph.types.contact, "count_contacts", broken)
    with caplog.at_level(logging.ERROR, logger="contactgraph"):
        response = await api.client.post(
            "/graphql", json={"query": CONTACTS}, headers=api.headers()
        )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"] == [
        {
            "message": MASKED_MESSAGE,
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            "locations": [{"line": 1, "column": 14}],
            "path": ["contacts", "totalCount"],
        }
    ]
    for secret in ("mongodb://", "hunter2", "db.internal", "Traceback", "RuntimeError", ".py"):
        assert secret not in response.text
    # The operator sees everything.
    [record] = [r for r in caplog.records if r.exc_info]
    assert "hunter2" in str(record.exc_info[1])


async def test_a_budget_that_cannot_be_spent_runs_nothing_and_is_logged(
    api, database, monkeypatch, caplog
):
    async def broken(*args):
        raise RuntimeError("lost mongodb://admin:hunter2@db.internal:27017/contactgraph")

    monkeypatch.setattr("graph.limits.spend", broken)
    create = 'mutation { contactCreate(input: {email: "a@example.com"}) { contact { id } } }'
    with caplog.at_level(logging.ERROR, logger="contactgraph"):
        body = await api.gql(create)
    assert body["data"] is None
    assert body["errors"] == [
        {"message": MASKED_MESSAGE, "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    ]
    assert "hunter2" not in json.dumps(body)
    assert await database.contacts.count_documents({}) == 0
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "the cost budget of the key could not be spent"
    assert "hunter2" in str(record.exc_info[1])


async def test_a_budget_that_cannot_be_read_leaves_a_refusal_as_it_is(api, monkeypatch, caplog):
    async def broken(*args):
        raise RuntimeError("lost mongodb://admin:hunter2@db.internal:27017/contactgraph")

    monkeypatch.setattr("graph.limits.spend", broken)
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        body = await api.gql("{ contacts { ")
    assert [e["extensions"]["code"] for e in body["errors"]] == ["GRAPHQL_PARSE_FAILED"]
    assert body["extensions"]["cost"] == {"requestedQueryCost": 0, "actualQueryCost": 0}
    [record] = [r for r in caplog.records if r.name == "contactgraph"]
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING,
        "the cost budget of the key could not be read",
    )
    assert "hunter2" in str(record.exc_info[1])


async def test_failures_outside_graphql_are_masked_too(served, keys, monkeypatch):
    import resolvers.shops

    async def broken(database, raw_key):
        raise RuntimeError("no route to mongodb://admin:hunter2@db.internal:27017")

    monkeypatch.setattr("graph.http.auth.find_key", broken)
    assert resolvers.shops.find_key is not broken
    transport = httpx.ASGITransport(app=served.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/graphql",
            json={"query": CONTACTS},
            headers={"Authorization": f"Bearer {keys['ADMIN']}"},
        )
    assert response.status_code == 500
    assert response.json() == {
        "errors": [{"message": MASKED_MESSAGE, "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    }
    assert "hunter2" not in response.text


async def test_get_runs_queries(api):
    response = await api.client.get("/graphql", params={"query": CONTACTS}, headers=api.headers())
    assert response.status_code == 200
    assert response.json()["data"] == {"contacts": {"totalCount": 0}}


async def test_get_refuses_mutations_and_writes_nothing(api, database):
    mutation = 'mutation { contactCreate(input: {email: "get@example.com"}) { contact { id } } }'
    response = await api.client.get("/graphql", params={"query": mutation}, headers=api.headers())
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert await database.contacts.count_documents({}) == 0


async def test_graphiql_needs_no_key(http, keys):
    response = await http.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()
    # Data never comes without a key, however the request is dressed.
    data = await http.get("/graphql", params={"query": CONTACTS}, headers={"Accept": "text/html"})
    assert data.status_code == 401


async def test_malformed_requests_are_json_errors(api):
    headers = {**api.headers(), "content-type": "application/json"}
    not_json = await api.client.post("/graphql", content=b"{nope", headers=headers)
    assert not_json.status_code == 400
    assert not_json.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    no_query = await api.client.post("/graphql", json={"variables": {}}, headers=api.headers())
    assert no_query.status_code == 400
    assert no_query.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    syntax = await api.gql("{ contacts { ")
    assert only_error(syntax, "GRAPHQL_PARSE_FAILED")["message"].startswith("Syntax Error")
    unknown = await api.gql("{ contacts { nope } }")
    assert only_error(unknown, "GRAPHQL_VALIDATION_FAILED")["message"].startswith(
        "Cannot query field 'nope'"
    )
