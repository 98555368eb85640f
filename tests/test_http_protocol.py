"""The HTTP protocol of /graphql: media types and status codes, persisted queries, batches, CORS."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json

import httpx
import pytest
from asgi_lifespan import LifespanManager
from conftest import per_request_state

from graph.http.app import create_app
from graph.http.persisted_queries import PersistedQueries
from graph.settings import Settings, SettingsError

GRAPHQL_RESPONSE = "application/graphql-response+json"
ADMIN_ORIGIN = "https://admin.example.com"
COUNT = "{ contacts { totalCount } }"
CREATE = 'mutation { contactCreate(input: {email: "%s"}) { contact { email } } }'
DEEP = "{ contacts { nodes { consent { history { state } } } } }"  # 5 levels


def sha256(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def persisted(query: str | None = None, digest: str | None = None, **more: object) -> dict:
    """An operation as Apollo's persisted-query link sends it."""
    body: dict = {
        "extensions": {
            "persistedQuery": {"version": 1, "sha256Hash": digest or sha256(query or "")}
        }
    }
    if query is not None:
        body["query"] = query
    body.update(more)
    return body


def counting(name: str) -> str:
    """COUNT as an operation of its own name: the store outlives a test, as it outlives a request."""
    return f"query {name} {{ contacts {{ totalCount }} }}"


def data(body: dict) -> dict:
    """The data of an answer without errors (its extensions, e.g. the cost, aside)."""
    assert "errors" not in body, body["errors"]
    return body["data"]


NO_CONTACTS = {"contacts": {"totalCount": 0}}


def codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


@pytest.fixture(scope="module")
async def configured_app(settings: Settings, served):
    """The app with CORS for ADMIN_ORIGIN and a depth limit of 4 (reachable with today's schema)."""
    configured = dataclasses.replace(settings, cors_origins=(ADMIN_ORIGIN,), max_depth=4)
    app = create_app(configured)
    async with LifespanManager(app) as manager:
        yield per_request_state(app, manager._state)


@pytest.fixture
async def configured(configured_app, keys):
    transport = httpx.ASGITransport(app=configured_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def auth(keys: dict[str, str], role: str = "ADMIN", **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}", **headers}


# --- Media types and status codes (GraphQL over HTTP) ---


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=0.5, application/json", "application/json"),
        ("application/json;q=0, */*", GRAPHQL_RESPONSE),
    ],
)
async def test_the_response_media_type_follows_accept(http, keys, accept, media_type):
    headers = auth(keys) if accept is None else auth(keys, Accept=accept)
    response = await http.post("/graphql", json={"query": COUNT}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert data(response.json()) == NO_CONTACTS
    assert int(response.headers["content-length"]) == len(response.content)


async def test_an_accept_header_without_a_json_type_is_406(http, keys):
    response = await http.post(
        "/graphql", json={"query": COUNT}, headers=auth(keys, Accept="text/csv")
    )
    assert response.status_code == 406
    assert codes(response.json()) == ["NOT_ACCEPTABLE"]


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ({"query": "{ contacts { "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ contacts { nope } }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": "query($n: Int!) { contacts(first: $n) { totalCount } }", "variables": {}},
            "BAD_USER_INPUT",
        ),
        (
            {
                "query": "query($n: Int!) { contacts(first: $n) { totalCount } }",
                "variables": {"n": "ten"},
            },
            "BAD_USER_INPUT",
        ),
    ],
    ids=["parse", "validation", "missing-variable", "variable-type"],
)
async def test_request_errors_are_400_without_data_only_for_graphql_response_json(
    http, keys, operation, code
):
    new = await http.post("/graphql", json=operation, headers=auth(keys, Accept=GRAPHQL_RESPONSE))
    assert new.status_code == 400
    assert new.headers["content-type"] == GRAPHQL_RESPONSE
    assert "data" not in new.json()
    assert codes(new.json()) == [code]

    legacy = await http.post(
        "/graphql", json=operation, headers=auth(keys, Accept="application/json")
    )
    assert legacy.status_code == 200
    assert legacy.json()["data"] is None
    assert codes(legacy.json()) == [code]


async def test_our_own_limits_are_validation_errors_too(configured, keys):
    response = await configured.post(
        "/graphql", json={"query": DEEP}, headers=auth(keys, Accept=GRAPHQL_RESPONSE)
    )
    assert response.status_code == 400
    assert "data" not in response.json()
    assert codes(response.json()) == ["QUERY_TOO_DEEP"]


async def test_a_refused_operation_is_403_without_data_and_writes_nothing(http, keys, database):
    response = await http.post(
        "/graphql",
        json={"query": CREATE % "reader@example.com"},
        headers=auth(keys, "READER", Accept=GRAPHQL_RESPONSE),
    )
    assert response.status_code == 403
    assert "data" not in response.json()
    assert codes(response.json()) == ["FORBIDDEN"]
    assert await database.contacts.count_documents({}) == 0


@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE, 400), ("application/json", 200)])
async def test_several_operations_without_a_name_run_none(http, keys, database, accept, status):
    document = f"{CREATE % 'first@example.com'} query Count {COUNT}".replace(
        "mutation {", "mutation Create {"
    )
    response = await http.post(
        "/graphql", json={"query": document}, headers=auth(keys, Accept=accept)
    )
    assert response.status_code == status
    assert response.json()["errors"][0]["message"] == (
        "The document holds several operations: name the one to run in operationName."
    )
    assert codes(response.json()) == ["BAD_REQUEST"]
    assert response.json().get("data") is None
    assert await database.contacts.count_documents({}) == 0

    named = await http.post(
        "/graphql", json={"query": document, "operationName": "Count"}, headers=auth(keys)
    )
    assert data(named.json()) == NO_CONTACTS


async def test_an_error_during_execution_keeps_data_and_200(http, keys):
    response = await http.post(
        "/graphql",
        json={"query": "{ contacts(first: 0) { totalCount } }"},
        headers=auth(keys, Accept=GRAPHQL_RESPONSE),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None  # the field is non-null: the error reached the root
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["contacts"]


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        (None, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/json; charset=latin-1", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/json; charset=UTF-8", 200, None),
    ],
)
async def test_a_post_body_must_be_json(http, keys, content_type, status, code):
    headers = auth(keys) if content_type is None else auth(keys, **{"Content-Type": content_type})
    response = await http.post("/graphql", content=json.dumps({"query": COUNT}), headers=headers)
    assert response.status_code == status
    if code:
        assert codes(response.json()) == [code]
    else:
        assert data(response.json()) == NO_CONTACTS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b'{ "not json',
        b'"a string"',
        b"42",
        b'{"notquery": "{ __typename }"}',
        b'{"query": 42}',
        b'{"query": ["{ __typename }"]}',
        b'{"query": "{ __typename }", "operationName": 7}',
        b'{"query": "{ __typename }", "variables": "{}"}',
        b'{"query": "{ __typename }", "variables": [1]}',
        b'{"query": "{ __typename }", "extensions": "yes"}',
        b'{"query": "query A { __typename }", "operationName": "B"}',
        b'{"query": "subscription { contactActivity(contactId: \\"x\\") { kind } }"}',
    ],
)
async def test_malformed_requests_are_400_json_errors(http, keys, body):
    response = await http.post(
        "/graphql", content=body, headers=auth(keys, **{"Content-Type": "application/json"})
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["message"]


async def test_head_is_405(http, keys):
    response = await http.head("/graphql", params={"query": COUNT}, headers=auth(keys))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_get_reads_variables_as_json(http, keys):
    query = "query($n: String!) { __type(name: $n) { name } }"
    ok = await http.get(
        "/graphql",
        params={"query": query, "variables": json.dumps({"n": "Contact"})},
        headers=auth(keys),
    )
    assert data(ok.json()) == {"__type": {"name": "Contact"}}
    bad = await http.get(
        "/graphql", params={"query": query, "variables": "{nope"}, headers=auth(keys)
    )
    assert bad.status_code == 400
    assert codes(bad.json()) == ["BAD_REQUEST"]


# --- Automatic persisted queries ---


@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_an_unknown_hash_asks_for_the_query_then_the_hash_alone_runs(http, keys, accept):
    headers = auth(keys, Accept=accept)
    query = counting("Unknown" + ("Json" if accept == "application/json" else "GraphQLResponse"))
    unknown = await http.post("/graphql", json=persisted(digest=sha256(query)), headers=headers)
    # application/json: 200, so Apollo's link reads the error and resends with the query.
    assert unknown.status_code == (200 if accept == "application/json" else 400)
    [error] = unknown.json()["errors"]
    assert error == {
        "message": "PersistedQueryNotFound",
        "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
    }

    registered = await http.post("/graphql", json=persisted(query), headers=headers)
    assert data(registered.json()) == NO_CONTACTS

    by_hash = await http.post("/graphql", json=persisted(digest=sha256(query)), headers=headers)
    assert data(by_hash.json()) == NO_CONTACTS
    over_get = await http.get(
        "/graphql",
        params={"extensions": json.dumps(persisted(digest=sha256(query))["extensions"])},
        headers=headers,
    )
    assert over_get.status_code == 200
    assert data(over_get.json()) == NO_CONTACTS


async def test_a_wrong_hash_is_refused_runs_nothing_and_is_not_remembered(http, keys, database):
    mutation = CREATE % "hash@example.com"
    wrong = sha256(counting("WrongHash"))
    response = await http.post("/graphql", json=persisted(mutation, wrong), headers=auth(keys))
    assert response.status_code == 400
    assert codes(response.json()) == ["PERSISTED_QUERY_HASH_MISMATCH"]
    assert await database.contacts.count_documents({}) == 0
    # The hash still names the query it belongs to, not the one sent with it.
    later = await http.post("/graphql", json=persisted(digest=wrong), headers=auth(keys))
    assert codes(later.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    ("persisted_query", "code"),
    [
        ("abc", "PERSISTED_QUERY_INVALID"),
        ({"version": 1}, "PERSISTED_QUERY_INVALID"),
        ({"version": 1, "sha256Hash": "abc"}, "PERSISTED_QUERY_INVALID"),
        ({"version": 1, "sha256Hash": "z" * 64}, "PERSISTED_QUERY_INVALID"),
        ({"version": 1, "sha256Hash": 12}, "PERSISTED_QUERY_INVALID"),
        ({"version": 2, "sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_UNSUPPORTED"),
        ({"sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_UNSUPPORTED"),
        ({"version": True, "sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_UNSUPPORTED"),
    ],
)
async def test_a_malformed_persisted_query_is_400(http, keys, database, persisted_query, code):
    body = {"query": CREATE % "bad@example.com", "extensions": {"persistedQuery": persisted_query}}
    response = await http.post("/graphql", json=body, headers=auth(keys))
    assert response.status_code == 400
    assert codes(response.json()) == [code]
    assert await database.contacts.count_documents({}) == 0


async def test_a_persisted_mutation_is_refused_over_get(http, keys, database):
    mutation = CREATE % "once@example.com"
    first = await http.post("/graphql", json=persisted(mutation), headers=auth(keys))
    assert first.json()["data"]["contactCreate"]["contact"]["email"] == "once@example.com"

    extensions = json.dumps(persisted(digest=sha256(mutation))["extensions"])
    again = await http.get("/graphql", params={"extensions": extensions}, headers=auth(keys))
    assert again.status_code == 405
    assert again.headers["allow"] == "POST"
    assert codes(again.json()) == ["METHOD_NOT_ALLOWED"]
    assert await database.contacts.count_documents({}) == 1


async def test_a_document_that_fails_validation_is_not_remembered(http, keys):
    invalid = "query NotRemembered { contacts { nope } }"
    first = await http.post("/graphql", json=persisted(invalid), headers=auth(keys))
    assert codes(first.json()) == ["GRAPHQL_VALIDATION_FAILED"]
    again = await http.post("/graphql", json=persisted(digest=sha256(invalid)), headers=auth(keys))
    assert codes(again.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_persisted_queries_are_kept_per_shop(http, keys):
    query = counting("PerShop")
    mine = await http.post("/graphql", json=persisted(query), headers=auth(keys))
    assert "errors" not in mine.json()
    other = await http.post(
        "/graphql", json=persisted(digest=sha256(query)), headers=auth(keys, "OTHER")
    )
    assert codes(other.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


def test_the_store_forgets_the_least_recently_used_beyond_its_bounds():
    store = PersistedQueries(max_documents=3, max_chars=1_000)
    documents = [f"{{ a{i}: __typename }}" for i in range(4)]
    for document in documents[:3]:
        store.remember("shop", sha256(document), document)
    # Using the oldest makes it the newest: the second is evicted instead.
    assert store.resolve("shop", None, sha256(documents[0])) == documents[0]
    store.remember("shop", sha256(documents[3]), documents[3])
    assert len(store) == 3
    assert store.resolve("shop", None, sha256(documents[3])) == documents[3]
    with pytest.raises(Exception, match="PersistedQueryNotFound"):
        store.resolve("shop", None, sha256(documents[1]))

    big = "{ __typename }" + " " * 600
    store.remember("shop", sha256(big), big)
    store.remember("shop", sha256(big + " "), big + " ")  # over 1,000 characters together
    assert len(store) == 1
    too_big = " " * 1_001
    store.remember("shop", sha256(too_big), too_big)
    assert len(store) == 1
    with pytest.raises(Exception, match="PersistedQueryNotFound"):
        store.resolve("shop", None, sha256(too_big))


# --- Batches ---


async def test_a_batch_answers_each_operation_in_order(http, keys):
    response = await http.post(
        "/graphql",
        json=[
            {"query": COUNT},
            {
                "query": "query Name($n: String!) { __type(name: $n) { name } }",
                "variables": {"n": "Contact"},
                "operationName": "Name",
            },
        ],
        headers=auth(keys),
    )
    assert response.status_code == 200
    assert [data(body) for body in response.json()] == [
        NO_CONTACTS,
        {"__type": {"name": "Contact"}},
    ]


async def test_a_batch_over_the_limit_is_one_400_and_nothing_runs(http, keys, database):
    batch = [{"query": CREATE % f"b{i}@example.com"} for i in range(11)]
    response = await http.post("/graphql", json=batch, headers=auth(keys))
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BATCH_TOO_LARGE"
    assert "at most 10" in error["message"]
    assert await database.contacts.count_documents({}) == 0


async def test_ten_operations_are_allowed(http, keys, database):
    batch = [{"query": CREATE % f"b{i}@example.com"} for i in range(10)]
    response = await http.post("/graphql", json=batch, headers=auth(keys))
    assert response.status_code == 200
    created = [data(body)["contactCreate"]["contact"]["email"] for body in response.json()]
    assert created == [f"b{i}@example.com" for i in range(10)]
    assert await database.contacts.count_documents({}) == 10


async def test_an_empty_batch_is_400(http, keys):
    response = await http.post("/graphql", json=[], headers=auth(keys))
    assert response.status_code == 400
    assert codes(response.json()) == ["BATCH_EMPTY"]


async def test_each_operation_of_a_batch_is_authorized_alone(http, keys, database):
    response = await http.post(
        "/graphql",
        json=[{"query": COUNT}, {"query": CREATE % "reader@example.com"}, {"query": COUNT}],
        headers=auth(keys, "READER"),
    )
    assert response.status_code == 200
    counted, refused, counted_again = response.json()
    assert data(counted) == data(counted_again) == NO_CONTACTS
    assert refused["data"] is None
    assert codes(refused) == ["FORBIDDEN"]
    assert await database.contacts.count_documents({}) == 0


async def test_each_operation_of_a_batch_is_limited_and_checked_alone(configured, keys):
    response = await configured.post(
        "/graphql",
        json=[
            {"query": DEEP},
            {"query": COUNT},
            "not an operation",
            {"variables": {}},
            persisted(digest=sha256("{ never: __typename }")),
            {"query": "{ contacts { "},
        ],
        headers=auth(keys, Accept=GRAPHQL_RESPONSE),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    too_deep, counted, not_an_object, no_query, unknown_hash, broken = response.json()
    assert data(counted) == NO_CONTACTS
    assert codes(too_deep) == ["QUERY_TOO_DEEP"] and "data" not in too_deep
    assert codes(not_an_object) == ["BAD_REQUEST"]
    assert codes(no_query) == ["BAD_REQUEST"]
    assert codes(unknown_hash) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert codes(broken) == ["GRAPHQL_PARSE_FAILED"]


async def test_the_batch_limit_is_configurable(settings, served, keys):
    app = create_app(dataclasses.replace(settings, max_batch=2))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=per_request_state(app, manager._state))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            two = await client.post("/graphql", json=[{"query": COUNT}] * 2, headers=auth(keys))
            three = await client.post("/graphql", json=[{"query": COUNT}] * 3, headers=auth(keys))
    assert two.status_code == 200 and len(two.json()) == 2
    assert three.status_code == 400
    assert codes(three.json()) == ["BATCH_TOO_LARGE"]


def test_the_batch_limit_and_origins_come_from_the_environment():
    settings = Settings.from_env(
        {
            "CONTACTGRAPH_MAX_BATCH": "25",
            "CONTACTGRAPH_CORS_ORIGINS": "https://Admin.example.com/, http://localhost:5173",
        }
    )
    assert settings.max_batch == 25
    assert settings.cors_origins == ("https://admin.example.com", "http://localhost:5173")
    assert Settings.from_env({}).cors_origins == ()
    for name, value in [
        ("CONTACTGRAPH_MAX_BATCH", "0"),
        ("CONTACTGRAPH_MAX_BATCH", "many"),
        ("CONTACTGRAPH_CORS_ORIGINS", "admin.example.com"),
        ("CONTACTGRAPH_CORS_ORIGINS", "https://admin.example.com/app"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


# --- CORS ---


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


@pytest.mark.parametrize("path", ["/graphql", "/exports/contacts.csv"])
async def test_a_listed_origin_is_allowed_by_the_preflight(configured, path):
    response = await configured.options(path, headers=preflight(ADMIN_ORIGIN, "GET"))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ADMIN_ORIGIN
    assert {"GET", "POST"} <= set(response.headers["access-control-allow-methods"].split(", "))
    allowed = response.headers["access-control-allow-headers"].lower().split(", ")
    assert {"authorization", "content-type", "x-request-id", "apollo-require-preflight"} <= set(
        allowed
    )
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers


async def test_an_unlisted_origin_gets_no_allow_header(configured, keys):
    refused = await configured.options("/graphql", headers=preflight("https://evil.example"))
    assert "access-control-allow-origin" not in refused.headers
    # A request sent anyway is answered (the server cannot stop it) but not readable in the page.
    sent = await configured.post(
        "/graphql", json={"query": COUNT}, headers=auth(keys, Origin="https://evil.example")
    )
    assert "access-control-allow-origin" not in sent.headers


async def test_answers_to_a_listed_origin_are_readable_even_refusals(configured, keys):
    ok = await configured.post(
        "/graphql", json={"query": COUNT}, headers=auth(keys, Origin=ADMIN_ORIGIN)
    )
    assert data(ok.json()) == NO_CONTACTS
    assert ok.headers["access-control-allow-origin"] == ADMIN_ORIGIN
    assert "origin" in ok.headers["vary"].lower()
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()

    no_key = await configured.post(
        "/graphql", json={"query": COUNT}, headers={"Origin": ADMIN_ORIGIN}
    )
    assert no_key.status_code == 401
    assert no_key.headers["access-control-allow-origin"] == ADMIN_ORIGIN

    export = await configured.get("/exports/contacts.csv", headers=auth(keys, Origin=ADMIN_ORIGIN))
    assert export.status_code == 200
    assert export.headers["access-control-allow-origin"] == ADMIN_ORIGIN
    assert "content-disposition" in export.headers["access-control-expose-headers"].lower()


async def test_other_endpoints_do_not_answer_other_origins(configured):
    response = await configured.get("/healthz", headers={"Origin": ADMIN_ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_without_configured_origins_there_is_no_cross_origin_access(http, keys):
    refused = await http.options("/graphql", headers=preflight(ADMIN_ORIGIN))
    assert refused.status_code == 405
    assert "access-control-allow-origin" not in refused.headers
    sent = await http.post(
        "/graphql", json={"query": COUNT}, headers=auth(keys, Origin=ADMIN_ORIGIN)
    )
    assert sent.status_code == 200
    assert "access-control-allow-origin" not in sent.headers


async def websocket_handshake(app, origin: str) -> str:
    """Opens a WebSocket to /graphql from `origin` at the ASGI level: "accepted" or "refused"."""
    incoming: asyncio.Queue[dict] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def send(message: dict) -> None:
        if not answer.done():
            answer.set_result("accepted" if message["type"] == "websocket.accept" else "refused")
            await incoming.put({"type": "websocket.disconnect", "code": 1000})

    scope = {
        "type": "websocket",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "scheme": "ws",
        "server": ("test", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"test"),
            (b"origin", origin.encode()),
            (b"sec-websocket-protocol", b"graphql-transport-ws"),
        ],
        "subprotocols": ["graphql-transport-ws"],
    }
    await asyncio.wait_for(app(scope, incoming.get, send), timeout=10)
    return answer.result()


async def test_subscriptions_open_from_listed_origins_only(configured_app, served):
    assert await websocket_handshake(configured_app, ADMIN_ORIGIN) == "accepted"
    assert await websocket_handshake(configured_app, "https://evil.example") == "refused"
    # Without configured origins, no other origin may open one.
    assert await websocket_handshake(served.asgi, ADMIN_ORIGIN) == "refused"
