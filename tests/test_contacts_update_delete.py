"""contactUpdate (locks details, logs DETAILS_UPDATED), contactUnlock and contactsDelete."""

from __future__ import annotations

from bson import Decimal128, ObjectId
from conftest import OTHER_SHOP, SHOP

from graph.types.node import decode_id, encode_id

CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) { contact { id updatedAt } userErrors { field code } }
}
"""
UPDATE = """
mutation($id: ID!, $input: ContactInput!) {
  contactUpdate(id: $id, input: $input) {
    contact {
      id email firstName lastName displayName phone company detailsLocked updatedAt createdAt labels
      shippingAddress { line1 city countryCode } billingAddress { line1 }
    }
    userErrors { field message code }
  }
}
"""
UNLOCK = """
mutation($id: ID!) {
  contactUnlock(id: $id) { contact { id detailsLocked email } userErrors { field message code } }
}
"""
DELETE = """
mutation($ids: [ID!]!) {
  contactsDelete(ids: $ids) { deletedIds userErrors { field message code } }
}
"""


async def create(api, **input) -> str:
    data = await api.data(CREATE, {"input": input})
    assert data["contactCreate"]["userErrors"] == []
    return data["contactCreate"]["contact"]["id"]


async def stored(database, gid: str) -> dict | None:
    return await database.contacts.find_one({"_id": decode_id(gid, "Contact")})


async def test_update_changes_what_was_sent_and_locks_the_details(api, database):
    gid = await create(
        api,
        email="ann@example.com",
        firstName="Ann",
        lastName="Lee",
        company="Acme",
        phone="+4930123456",
    )
    before = await stored(database, gid)

    data = await api.data(
        UPDATE,
        {
            "id": gid,
            "input": {
                "firstName": "Anna",
                "company": None,  # null clears
                "shippingAddress": {"line1": "Road 1", "city": "Town", "countryCode": "at"},
            },
        },
    )
    payload = data["contactUpdate"]
    assert payload["userErrors"] == []
    contact = payload["contact"]
    assert contact["firstName"] == "Anna"
    assert contact["lastName"] == "Lee"  # not sent: unchanged
    assert contact["phone"] == "+4930123456"
    assert contact["company"] is None
    assert contact["displayName"] == "Anna Lee"
    assert contact["detailsLocked"] is True
    assert contact["shippingAddress"] == {"line1": "Road 1", "city": "Town", "countryCode": "AT"}
    assert contact["billingAddress"] is None

    after = await stored(database, gid)
    assert after["rev"] == before["rev"] + 1
    assert after["detailsLocked"] is True
    assert after["updatedAt"] >= before["updatedAt"]
    assert contact["updatedAt"] == after["updatedAt"].isoformat(timespec="milliseconds")
    assert after["nameKey"] == "anna lee"
    assert "anna" in after["searchTerms"] and "acme" not in after["searchTerms"]
    # The log (stored in write order) read newest first; the edit is recorded with its author.
    log = sorted(after["activity"], key=lambda e: (e["at"], e["_id"]), reverse=True)
    assert [e["kind"] for e in log] == ["DETAILS_UPDATED", "CONTACT_CREATED"]
    assert log[0]["author"] == "Admin Person"
    assert after["activityCount"] == 2
    # The list and search see the new details at once.
    found = await api.data('{ contacts(query: "anna") { nodes { id } } }')
    assert found["contacts"]["nodes"] == [{"id": gid}]
    assert (await api.data('{ contacts(query: "acme") { nodes { id } } }'))["contacts"][
        "nodes"
    ] == []


async def test_update_of_the_email_moves_the_identity(api, database):
    gid = await create(api, email="old@example.com")
    data = await api.data(UPDATE, {"id": gid, "input": {"email": "New@Example.com"}})
    assert data["contactUpdate"]["userErrors"] == []
    assert data["contactUpdate"]["contact"]["email"] == "New@example.com"
    assert (await stored(database, gid))["emailKey"] == "new@example.com"
    old = await api.data('{ contactByEmail(email: "old@example.com") { id } }')
    new = await api.data('{ contactByEmail(email: "NEW@example.com") { id } }')
    assert old["contactByEmail"] is None
    assert new["contactByEmail"] == {"id": gid}
    # The old address is free again.
    await create(api, email="old@example.com")
    # Its own email in another letter case is no conflict.
    same = await api.data(UPDATE, {"id": gid, "input": {"email": "NEW@EXAMPLE.COM"}})
    assert same["contactUpdate"]["userErrors"] == []
    assert same["contactUpdate"]["contact"]["email"] == "NEW@example.com"


async def test_update_to_another_contacts_email_is_taken_and_changes_nothing(api, database):
    await create(api, email="ann@example.com")
    gid = await create(api, email="bob@example.com", firstName="Bob")
    before = await stored(database, gid)
    data = await api.data(
        UPDATE, {"id": gid, "input": {"email": "ANN@example.com", "firstName": "Robert"}}
    )
    assert data["contactUpdate"] == {
        "contact": None,
        "userErrors": [
            {
                "field": ["input", "email"],
                "message": "Another contact already has this email.",
                "code": "TAKEN",
            }
        ],
    }
    assert await stored(database, gid) == before


async def test_update_cannot_remove_the_email(api, database):
    gid = await create(api, email="keep@example.com")
    before = await stored(database, gid)
    for email in (None, "", "  "):
        data = await api.data(UPDATE, {"id": gid, "input": {"email": email, "firstName": "X"}})
        assert data["contactUpdate"]["contact"] is None
        assert [(e["field"], e["code"]) for e in data["contactUpdate"]["userErrors"]] == [
            (["input", "email"], "REQUIRED")
        ]
    assert await stored(database, gid) == before


async def test_labels_are_not_changed_by_update(api, database):
    gid = await create(api, email="l@example.com", labels=["VIP"])
    before = await stored(database, gid)
    data = await api.data(UPDATE, {"id": gid, "input": {"labels": ["Other"]}})
    assert [(e["field"], e["code"]) for e in data["contactUpdate"]["userErrors"]] == [
        (["input", "labels"], "INVALID")
    ]
    assert await stored(database, gid) == before


async def test_update_and_unlock_of_unknown_ids_are_not_found(api, as_role, database):
    gid = await create(api, email="mine@example.com")
    before = await stored(database, gid)
    other = as_role("OTHER")
    for caller, target in (
        (api, encode_id("Contact", ObjectId())),
        (api, "garbage"),
        (api, encode_id("Order", decode_id(gid, "Contact"))),
        (other, gid),  # another shop's contact
    ):
        updated = await caller.data(UPDATE, {"id": target, "input": {"firstName": "X"}})
        assert updated["contactUpdate"] == {
            "contact": None,
            "userErrors": [{"field": ["id"], "message": "Contact not found.", "code": "NOT_FOUND"}],
        }
        unlocked = await caller.data(UNLOCK, {"id": target})
        assert unlocked["contactUnlock"] == {
            "contact": None,
            "userErrors": [{"field": ["id"], "message": "Contact not found.", "code": "NOT_FOUND"}],
        }
    assert await stored(database, gid) == before


async def test_unlock_lets_orders_overwrite_again(api, database):
    gid = await create(api, email="u@example.com")
    await api.data(UPDATE, {"id": gid, "input": {"firstName": "Uma"}})
    assert (await stored(database, gid))["detailsLocked"] is True
    data = await api.data(UNLOCK, {"id": gid})
    assert data["contactUnlock"] == {
        "contact": {"id": gid, "detailsLocked": False, "email": "u@example.com"},
        "userErrors": [],
    }
    doc = await stored(database, gid)
    assert doc["detailsLocked"] is False
    assert doc["firstName"] == "Uma"
    # Unlocking an unlocked contact is harmless.
    again = await api.data(UNLOCK, {"id": gid})
    assert again["contactUnlock"]["contact"]["detailsLocked"] is False


async def test_delete_many_reports_the_missing_and_deletes_the_rest(api, as_role, database):
    keep = await create(api, email="keep@example.com")
    doomed = [await create(api, email=f"gone{i}@example.com", labels=["VIP"]) for i in range(3)]
    foreign = await create(as_role("OTHER"), email="foreign@example.com")
    unknown = encode_id("Contact", ObjectId())
    order_id = ObjectId()
    await database.orders.insert_one(
        {
            "_id": order_id,
            "shopId": SHOP,
            "externalId": "1001",
            "status": "OPEN",
            "email": "gone0@example.com",
            "emailKey": "gone0@example.com",
            "contactId": decode_id(doomed[0], "Contact"),
            "total": Decimal128("19.90"),
        }
    )
    ids = [
        doomed[0],
        unknown,
        doomed[1],
        foreign,
        "not-an-id",
        encode_id("Order", order_id),
        doomed[2],
    ]

    data = await api.data(DELETE, {"ids": ids})

    payload = data["contactsDelete"]
    assert payload["deletedIds"] == doomed
    assert payload["userErrors"] == [
        {"field": ["ids", str(i)], "message": "Contact not found.", "code": "NOT_FOUND"}
        for i in (1, 3, 4, 5)
    ]
    remaining = {
        encode_id("Contact", d["_id"])
        for d in await database.contacts.find({}, {"_id": 1}).to_list()
    }
    assert remaining == {keep, foreign}
    # Orders stay for the books, unlinked from the person.
    order = await database.orders.find_one({"_id": order_id})
    assert (
        order is not None and order["contactId"] is None and order["total"] == Decimal128("19.90")
    )
    # Label counts follow.
    label = await database.labels.find_one({"shopId": SHOP, "key": "vip"})
    assert label["contactCount"] == 0
    # A second call finds nothing left to delete.
    again = await api.data(DELETE, {"ids": doomed})
    assert again["contactsDelete"]["deletedIds"] == []
    assert [e["field"] for e in again["contactsDelete"]["userErrors"]] == [
        ["ids", "0"],
        ["ids", "1"],
        ["ids", "2"],
    ]
    assert (await api.data("query($id: ID!) { contact(id: $id) { id } }", {"id": doomed[0]}))[
        "contact"
    ] is None


async def test_delete_of_a_foreign_id_leaves_it_alone(as_role, database):
    theirs = await create(as_role("OTHER"), email="theirs@example.com")
    data = await as_role("ADMIN").data(DELETE, {"ids": [theirs]})
    assert data["contactsDelete"] == {
        "deletedIds": [],
        "userErrors": [
            {"field": ["ids", "0"], "message": "Contact not found.", "code": "NOT_FOUND"}
        ],
    }
    assert await database.contacts.count_documents({"shopId": OTHER_SHOP}) == 1


async def test_delete_with_the_same_id_twice_deletes_once(api, database):
    gid = await create(api, email="twice@example.com")
    data = await api.data(DELETE, {"ids": [gid, gid]})
    assert data["contactsDelete"] == {"deletedIds": [gid], "userErrors": []}
    assert await database.contacts.count_documents({}) == 0


async def test_delete_takes_at_most_250_ids(api, database):
    gid = await create(api, email="many@example.com")
    data = await api.data(DELETE, {"ids": [gid] * 251})
    assert data["contactsDelete"]["deletedIds"] == []
    assert [(e["field"], e["code"]) for e in data["contactsDelete"]["userErrors"]] == [
        (["ids"], "LIMIT_EXCEEDED")
    ]
    assert await database.contacts.count_documents({}) == 1
    empty = await api.data(DELETE, {"ids": []})
    assert empty["contactsDelete"] == {"deletedIds": [], "userErrors": []}
