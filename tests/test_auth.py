"""Who may call what: API keys, roles, and the wall between shops."""

from __future__ import annotations

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP, Api

from graph.types.node import encode_id
from resolvers.shops import revoke_key

CONTACTS = "{ contacts { totalCount nodes { id email } } }"
CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) { contact { id } userErrors { field code } }
}
"""

MUTATIONS = {
    "contactCreate": (
        'mutation { contactCreate(input: {email: "new@example.com"}) { contact { id } } }',
        {},
    ),
    "contactUpdate": (
        'mutation($id: ID!) { contactUpdate(id: $id, input: {firstName: "X"}) { contact { id } } }',
        {"id": None},
    ),
    "contactUnlock": (
        "mutation($id: ID!) { contactUnlock(id: $id) { contact { id } } }",
        {"id": None},
    ),
    "contactsDelete": (
        "mutation($id: ID!) { contactsDelete(ids: [$id]) { deletedIds } }",
        {"id": None},
    ),
}

READS = {
    "contacts": ("{ contacts { nodes { id } } }", {}),
    "contact": ("query($id: ID!) { contact(id: $id) { id } }", {"id": None}),
    "contactByEmail": ('{ contactByEmail(email: "ann@example.com") { id } }', {}),
    "node": ("query($id: ID!) { node(id: $id) { id } }", {"id": None}),
}


@pytest.fixture
async def ann(api) -> str:
    data = await api.data(CREATE, {"input": {"email": "ann@example.com", "firstName": "Ann"}})
    return data["contactCreate"]["contact"]["id"]


async def snapshot(database) -> list[dict]:
    return await database.contacts.find({}, sort=[("_id", 1)]).to_list()


def unauthorized(response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "API key" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer cg_admin_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"X-Api-Key": "anything"},
    ],
    ids=["none", "empty", "scheme-only", "blank", "unknown", "basic", "huge", "other-header"],
)
async def test_no_or_bad_key_is_401_json(http, keys, database, headers):
    response = await http.post("/graphql", json={"query": CONTACTS}, headers=headers)
    unauthorized(response)
    mutation = await http.post(
        "/graphql", json={"query": MUTATIONS["contactCreate"][0]}, headers=headers
    )
    unauthorized(mutation)
    assert await database.contacts.count_documents({}) == 0


async def test_get_without_a_key_is_401_too(http, keys):
    unauthorized(await http.get("/graphql", params={"query": CONTACTS}))


async def test_the_scheme_is_case_insensitive(http, keys):
    response = await http.post(
        "/graphql", json={"query": CONTACTS}, headers={"Authorization": f"bearer {keys['READER']}"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["contacts"]["totalCount"] == 0


async def test_a_revoked_key_is_401(http, keys, database):
    reader = Api(http, keys["READER"])
    assert (await reader.data(CONTACTS))["contacts"]["totalCount"] == 0
    row = await database.api_keys.find_one({"shopId": SHOP, "role": "READER"})
    assert await revoke_key(database, str(row["_id"]))
    unauthorized(await http.post("/graphql", json={"query": CONTACTS}, headers=reader.headers()))


async def test_keys_are_stored_hashed(keys, database):
    rows = await database.api_keys.find({}).to_list()
    assert len(rows) == len(keys)
    stored_text = repr(rows)
    for raw in keys.values():
        assert raw not in stored_text


@pytest.mark.parametrize("role", ["READER", "INGEST", "PUBLIC"])
@pytest.mark.parametrize("field", list(MUTATIONS))
async def test_roles_without_write_are_forbidden_and_nothing_is_written(
    as_role, ann, database, role, field
):
    query, variables = MUTATIONS[field]
    variables = {k: ann for k in variables}
    before = await snapshot(database)
    body = await as_role(role).gql(query, variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert role in error["message"] and field in error["message"]
    assert await snapshot(database) == before


@pytest.mark.parametrize("role", ["ADMIN", "STAFF"])
async def test_admin_and_staff_may_write(as_role, ann, database, role):
    caller = as_role(role)
    for field, (query, variables) in MUTATIONS.items():
        body = await caller.gql(query, {k: ann for k in variables})
        assert "errors" not in body, (field, body)
    assert (
        await database.contacts.count_documents({"shopId": SHOP, "emailKey": "ann@example.com"})
        == 0
    )
    assert (
        await database.contacts.count_documents({"shopId": SHOP, "emailKey": "new@example.com"})
        == 1
    )


@pytest.mark.parametrize("role", ["ADMIN", "STAFF", "READER"])
async def test_reading_roles_read(as_role, ann, role):
    caller = as_role(role)
    data = await caller.data(
        """query($id: ID!) {
          contacts { totalCount nodes { id } }
          contact(id: $id) { email }
          contactByEmail(email: "ANN@example.com") { id }
          node(id: $id) { id }
        }""",
        {"id": ann},
    )
    assert data == {
        "contacts": {"totalCount": 1, "nodes": [{"id": ann}]},
        "contact": {"email": "ann@example.com"},
        "contactByEmail": {"id": ann},
        "node": {"id": ann},
    }


@pytest.mark.parametrize("role", ["INGEST", "PUBLIC"])
@pytest.mark.parametrize("field", list(READS))
async def test_ingest_and_public_cannot_read(as_role, ann, role, field):
    query, variables = READS[field]
    body = await as_role(role).gql(query, {k: ann for k in variables})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_a_forbidden_field_anywhere_refuses_the_whole_operation(as_role, ann, database):
    before = await snapshot(database)
    # Hidden in a fragment next to an allowed field.
    body = await as_role("READER").gql(
        """
        mutation($id: ID!) { ...M }
        fragment M on Mutation {
          contactUnlock(id: $id) { contact { id } }
          contactsDelete(ids: [$id]) { deletedIds }
        }
        """,
        {"id": ann},
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await snapshot(database) == before
    mixed = await as_role("PUBLIC").gql("{ __typename contacts { totalCount } }")
    assert mixed["data"] is None
    assert mixed["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_introspection_is_open_to_every_valid_key(as_role):
    for role in ("PUBLIC", "INGEST"):
        data = await as_role(role).data("{ __typename __schema { queryType { name } } }")
        assert data == {"__typename": "Query", "__schema": {"queryType": {"name": "Query"}}}


async def test_shops_are_isolated(api, as_role, ann, database):
    other = as_role("OTHER")
    theirs = (
        await other.data(CREATE, {"input": {"email": "ann@example.com", "firstName": "Their Ann"}})
    )["contactCreate"]["contact"]["id"]
    assert theirs != ann

    mine = await api.data(CONTACTS)
    assert mine["contacts"] == {"totalCount": 1, "nodes": [{"id": ann, "email": "ann@example.com"}]}
    seen_by_other = await other.data(CONTACTS)
    assert seen_by_other["contacts"] == {
        "totalCount": 1,
        "nodes": [{"id": theirs, "email": "ann@example.com"}],
    }

    before = await snapshot(database)
    for query, variables in (
        ("query($id: ID!) { contact(id: $id) { id } }", {"id": ann}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": ann}),
    ):
        data = await other.data(query, variables)
        assert list(data.values()) == [None]
    update = await other.data(
        'mutation($id: ID!) { contactUpdate(id: $id, input: {firstName: "Mallory"}) {'
        " contact { id } userErrors { field code } } }",
        {"id": ann},
    )
    assert update["contactUpdate"] == {
        "contact": None,
        "userErrors": [{"field": ["id"], "code": "NOT_FOUND"}],
    }
    delete = await other.data(
        "mutation($id: ID!) { contactsDelete(ids: [$id]) {"
        " deletedIds userErrors { field code } } }",
        {"id": ann},
    )
    assert delete["contactsDelete"] == {
        "deletedIds": [],
        "userErrors": [{"field": ["ids", "0"], "code": "NOT_FOUND"}],
    }
    assert await snapshot(database) == before
    assert await database.contacts.count_documents({"shopId": OTHER_SHOP}) == 1


async def test_an_id_from_nowhere_is_simply_not_found(api):
    data = await api.data(
        "query($id: ID!) { contact(id: $id) { id } }", {"id": encode_id("Contact", ObjectId())}
    )
    assert data == {"contact": None}
