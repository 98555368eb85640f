"""contactCreate, and reading contacts back: contact, contactByEmail, node, contacts."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId
from conftest import SHOP

from graph.types.node import encode_id

CONTACT_FIELDS = """
  id email firstName lastName displayName phone company kind labels hasAccount detailsLocked
  orderCount totalSpent { amount currencyCode } averageOrderValue { amount currencyCode }
  firstOrderAt lastOrderAt createdAt updatedAt
  consent { state optInLevel updatedAt source history { state } }
  shippingAddress { name company line1 line2 postalCode city region countryCode phone }
  billingAddress { name company line1 line2 postalCode city region countryCode phone }
"""

CREATE = (
    "mutation($input: ContactInput!) { contactCreate(input: $input) { contact {"
    + CONTACT_FIELDS
    + "} userErrors { field message code } } }"
)
BY_ID = "query($id: ID!) { contact(id: $id) {" + CONTACT_FIELDS + "} }"
BY_EMAIL = "query($email: String!) { contactByEmail(email: $email) { id email } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on Contact { email kind } } }"


def parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    assert moment.utcoffset() == dt.timedelta(0), text
    return moment


async def test_only_an_email_makes_a_lead_with_empty_statistics(api, database):
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    data = await api.data(CREATE, {"input": {"email": "  lead@example.com "}})
    payload = data["contactCreate"]
    assert payload["userErrors"] == []
    contact = payload["contact"]
    created = parse_time(contact["createdAt"])
    assert before <= created <= dt.datetime.now(dt.UTC)
    assert contact == {
        "id": contact["id"],
        "email": "lead@example.com",
        "firstName": None,
        "lastName": None,
        "displayName": "lead@example.com",
        "phone": None,
        "company": None,
        "kind": "LEAD",
        "labels": [],
        "hasAccount": False,
        "detailsLocked": False,
        "orderCount": 0,
        "totalSpent": {"amount": "0", "currencyCode": "XXX"},
        "averageOrderValue": None,
        "firstOrderAt": None,
        "lastOrderAt": None,
        "createdAt": contact["createdAt"],
        "updatedAt": contact["createdAt"],
        "consent": {
            "state": "NOT_SUBSCRIBED",
            "optInLevel": None,
            "updatedAt": None,
            "source": None,
            "history": [],
        },
        "shippingAddress": None,
        "billingAddress": None,
    }
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert encode_id("Contact", stored["_id"]) == contact["id"]
    assert stored["emailKey"] == "lead@example.com"
    assert [(e["kind"], e["author"]) for e in stored["activity"]] == [
        ("CONTACT_CREATED", "Admin Person")
    ]
    assert stored["activityCount"] == 1


async def test_every_detail_is_kept(api, database):
    address = {
        "name": "Ann Lee",
        "company": "Acme",
        "line1": "Hauptstraße 1",
        "line2": "Hinterhaus",
        "postalCode": "10115",
        "city": "Berlin",
        "region": "BE",
        "countryCode": "de",
        "phone": "030 1234567",
    }
    data = await api.data(
        CREATE,
        {
            "input": {
                "email": "Ann.Lee@Example.COM",
                "firstName": " Ann ",
                "lastName": "Lee",
                "phone": "030 1234567",
                "company": "Acme GmbH",
                "shippingAddress": address,
                "billingAddress": {"line1": "Postfach 9", "city": "Berlin", "countryCode": "DE"},
                "labels": ["VIP", "vip", "  Newsletter  "],
            }
        },
    )
    contact = data["contactCreate"]["contact"]
    assert data["contactCreate"]["userErrors"] == []
    assert (
        contact["email"] == "Ann.Lee@example.com"
    )  # the domain is normalized, the local part kept
    assert contact["firstName"] == "Ann"
    assert contact["displayName"] == "Ann Lee"
    # A national number is read in the country of the address.
    assert contact["phone"] == "+49301234567"
    assert contact["company"] == "Acme GmbH"
    assert contact["labels"] == ["VIP", "Newsletter"]
    # The address's own number is read in the address's country too.
    assert contact["shippingAddress"] == {**address, "countryCode": "DE", "phone": "+49301234567"}
    assert contact["billingAddress"] == {
        "name": None,
        "company": None,
        "line1": "Postfach 9",
        "line2": None,
        "postalCode": None,
        "city": "Berlin",
        "region": None,
        "countryCode": "DE",
        "phone": None,
    }
    stored = await database.contacts.find_one({"shopId": SHOP})
    assert stored["emailKey"] == "ann.lee@example.com"
    assert stored["labelKeys"] == ["vip", "newsletter"]
    labels = await database.labels.find(
        {"shopId": SHOP}, {"_id": 0, "key": 1, "name": 1, "contactCount": 1}
    ).to_list()
    assert sorted(labels, key=lambda x: x["key"]) == [
        {"key": "newsletter", "name": "Newsletter", "contactCount": 1},
        {"key": "vip", "name": "VIP", "contactCount": 1},
    ]
    assert (await database.shops.find_one({"_id": SHOP}))["labelCount"] == 2


async def test_the_same_email_in_any_case_is_taken(api, database):
    first = await api.data(CREATE, {"input": {"email": "Ann@Example.com"}})
    assert first["contactCreate"]["userErrors"] == []
    for email in ("ann@example.com", "ANN@EXAMPLE.COM", " Ann@example.COM "):
        again = await api.data(
            CREATE, {"input": {"email": email, "firstName": "Other", "labels": ["New"]}}
        )
        assert again["contactCreate"] == {
            "contact": None,
            "userErrors": [
                {
                    "field": ["input", "email"],
                    "message": "Another contact already has this email.",
                    "code": "TAKEN",
                }
            ],
        }
    assert await database.contacts.count_documents({}) == 1
    # The refused call reserved no label.
    assert await database.labels.count_documents({}) == 0
    assert (await database.shops.find_one({"_id": SHOP}))["labelCount"] == 0


async def test_email_is_required_on_create(api, database):
    for input in ({}, {"email": None}, {"email": "   "}, {"firstName": "Ann"}):
        data = await api.data(CREATE, {"input": input})
        assert data["contactCreate"]["contact"] is None
        assert [(e["field"], e["code"]) for e in data["contactCreate"]["userErrors"]] == [
            (["input", "email"], "REQUIRED")
        ]
    assert await database.contacts.count_documents({}) == 0


async def test_contact_by_id_by_email_and_as_a_node(api):
    created = (await api.data(CREATE, {"input": {"email": "Bea@Example.com", "firstName": "Bea"}}))[
        "contactCreate"
    ]
    gid = created["contact"]["id"]

    by_id = await api.data(BY_ID, {"id": gid})
    assert by_id["contact"] == created["contact"]

    for email in ("bea@example.com", "BEA@EXAMPLE.COM", "Bea@example.com", " bea@EXAMPLE.com "):
        found = await api.data(BY_EMAIL, {"email": email})
        assert found["contactByEmail"] == {"id": gid, "email": "Bea@example.com"}
    for email in ("nobody@example.com", "not an email", "", "bea@example.co"):
        assert (await api.data(BY_EMAIL, {"email": email}))["contactByEmail"] is None

    node = await api.data(NODE, {"id": gid})
    assert node["node"] == {
        "__typename": "Contact",
        "id": gid,
        "email": "Bea@example.com",
        "kind": "LEAD",
    }


async def test_unknown_malformed_and_foreign_ids_read_as_null(api, as_role):
    created = (await api.data(CREATE, {"input": {"email": "cid@example.com"}}))["contactCreate"][
        "contact"
    ]
    missing = encode_id("Contact", ObjectId())
    other_type = encode_id("Order", ObjectId())
    for gid in (missing, other_type, "nope", "", "Q29udGFjdDp4", '{"$ne": null}', "x" * 500):
        assert (await api.data(BY_ID, {"id": gid}))["contact"] is None
        assert (await api.data(NODE, {"id": gid}))["node"] is None
    # The id of a contact in another shop is not found either.
    other = as_role("OTHER")
    assert (await other.data(BY_ID, {"id": created["id"]}))["contact"] is None
    assert (await other.data(NODE, {"id": created["id"]}))["node"] is None
    assert (await other.data(BY_EMAIL, {"email": "cid@example.com"}))["contactByEmail"] is None


async def test_one_email_can_be_a_contact_in_two_shops(api, as_role, database):
    mine = await api.data(CREATE, {"input": {"email": "both@example.com"}})
    theirs = await as_role("OTHER").data(CREATE, {"input": {"email": "BOTH@example.com"}})
    assert mine["contactCreate"]["userErrors"] == theirs["contactCreate"]["userErrors"] == []
    assert mine["contactCreate"]["contact"]["id"] != theirs["contactCreate"]["contact"]["id"]
    assert await database.contacts.count_documents({"emailKey": "both@example.com"}) == 2
    listed = await api.data("{ contacts { totalCount nodes { id } } }")
    assert listed["contacts"] == {
        "totalCount": 1,
        "nodes": [{"id": mine["contactCreate"]["contact"]["id"]}],
    }


async def test_created_contacts_are_listed_and_searchable(api):
    for email, first, company in (
        ("c1@example.com", "Carla", "Zeta Ltd"),
        ("c2@example.com", "Dora", None),
        ("c3@example.com", None, "Carlsberg"),
    ):
        data = await api.data(
            CREATE, {"input": {"email": email, "firstName": first, "company": company}}
        )
        assert data["contactCreate"]["userErrors"] == []
    listed = await api.data(
        '{ contacts(first: 2, query: "carl", sortKey: EMAIL) {'
        " totalCount nodes { email displayName } pageInfo { hasNextPage } } }"
    )
    assert listed["contacts"] == {
        "totalCount": 2,
        "nodes": [
            {"email": "c1@example.com", "displayName": "Carla"},
            {"email": "c3@example.com", "displayName": "c3@example.com"},
        ],
        "pageInfo": {"hasNextPage": False},
    }
    by_company = await api.data('{ contacts(query: "ZETA") { nodes { email } } }')
    assert by_company["contacts"]["nodes"] == [{"email": "c1@example.com"}]


async def test_staff_may_create_and_is_the_author(as_role, database):
    data = await as_role("STAFF").data(CREATE, {"input": {"email": "staff@example.com"}})
    assert data["contactCreate"]["userErrors"] == []
    stored = await database.contacts.find_one({"emailKey": "staff@example.com"})
    assert stored["activity"][0]["author"] == "Staff Person"
