"""Right of access (contactDataExport) and right to erasure (contactErase)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId, json_util
from conftest import SHOP

from graph.types.node import decode_id, encode_id
from loaders.mongo import COLLECTIONS
from resolvers import activity
from resolvers.activity import SPILL_AT
from resolvers.consent import ConsentEvent, record_consent

T0 = dt.datetime(2025, 4, 1, 9, 0, tzinfo=dt.UTC)

CREATE = """
mutation($input: ContactInput!) { contactCreate(input: $input) { contact { id } userErrors { code } } }
"""
ORDER = """
mutation($input: OrderInput!) { orderRecord(input: $input) { order { id } userErrors { field code message } } }
"""
NOTE = """
mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { userErrors { code } } }
"""
EXPORT = "query($id: ID!) { contactDataExport(id: $id) }"
ERASE = """
mutation($id: ID!) { contactErase(id: $id) { deletedIds userErrors { field message code } } }
"""

# Distinctive values, so a search of the whole database finds them wherever they are.
EMAIL = "Annalise.Lindqvist@Example.com"
FIRST, LAST = "Annalise", "Lindqvist"
PHONE_GIVEN, PHONE = "+46 70 123 45 67", "+46701234567"
STREET = "Skeppargatan 77"
ADDRESS = {
    "name": f"{FIRST} {LAST}",
    "line1": STREET,
    "postalCode": "114 52",
    "city": "Stockholm",
    "countryCode": "SE",
    "phone": PHONE_GIVEN,
}


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def record(api, email: str, number: str, total: str, **fields: Any) -> None:
    data = await api.data(
        ORDER,
        {
            "input": {
                "externalId": number,
                "number": number,
                "email": email,
                "currencyCode": "SEK",
                "placedAt": iso(T0),
                "lineItems": [{"title": "Lamp", "quantity": 1, "unitPrice": total}],
                **fields,
            }
        },
    )
    assert data["orderRecord"]["userErrors"] == [], data


@pytest.fixture
async def person(api, database):
    """Annalise with orders, notes, a long (partly archived) log, consent, messages and an unlinked old order."""
    created = await api.data(
        CREATE,
        {
            "input": {
                "email": EMAIL,
                "firstName": FIRST,
                "lastName": LAST,
                "phone": PHONE_GIVEN,
                "shippingAddress": ADDRESS,
                "billingAddress": ADDRESS,
                "labels": ["VIP"],
            }
        },
    )
    gid = created["contactCreate"]["contact"]["id"]
    oid = decode_id(gid, "Contact")
    order_fields = {
        "firstName": FIRST,
        "lastName": LAST,
        "phone": PHONE_GIVEN,
        "shippingAddress": ADDRESS,
        "billingAddress": ADDRESS,
    }
    await record(api, EMAIL.lower(), "S-1", "100.00", **order_fields)
    await record(api, EMAIL, "S-2", "50.00", **order_fields)
    await record(
        api,
        "bob@example.org",
        "B-1",
        "20.00",
        firstName="Bob",
        shippingAddress={"line1": "Other 1", "city": "Oslo"},
    )
    await api.data(NOTE, {"id": gid, "text": f"{FIRST} asked about lamps"})
    entries = [
        activity.entry(
            "FORM_SUBMITTED", text=f"message {i} from {FIRST}", at=T0 - dt.timedelta(hours=i)
        )
        for i in range(SPILL_AT)
    ]
    doc = await database.contacts.find_one_and_update(
        {"_id": oid}, activity.push(entries), projection={"activity": 0}, return_document=True
    )
    await activity.spill_overflow(database, SHOP, doc)
    assert await database.activity_archive.count_documents({"contactId": oid}) >= 1
    await record_consent(
        database,
        SHOP,
        oid,
        ConsentEvent(
            state="SUBSCRIBED", at=T0, source="CONTACT_FORM", evidence=f"Yes, {FIRST}, send news"
        ),
    )
    await database.messages.insert_many(
        [
            {
                "_id": ObjectId(),
                "shopId": SHOP,
                "contactId": oid,
                "to": EMAIL,
                "toKey": EMAIL.lower(),
                "subject": f"Hello {FIRST}",
                "body": "Hi",
                "marketing": False,
                "status": "SENT",
                "createdAt": T0,
            },
            # Sent before this contact existed (an earlier one was deleted): found by the address.
            {
                "_id": ObjectId(),
                "shopId": SHOP,
                "contactId": ObjectId(),
                "to": EMAIL.upper(),
                "toKey": EMAIL.lower(),
                "subject": "Old",
                "body": "x",
                "marketing": True,
                "status": "SENT",
                "createdAt": T0,
            },
        ]
    )
    old = await database.orders.find_one({"number": "S-1"})
    old.update(_id=ObjectId(), externalId="S-0", number="S-0", contactId=None)
    await database.orders.insert_one(old)
    return gid, oid


async def test_the_data_export_holds_everything_stored_about_the_person(
    api, as_role, database, person
):
    gid, oid = person
    stored = await database.contacts.find_one({"_id": oid})

    data = (await api.data(EXPORT, {"id": gid}))["contactDataExport"]

    assert data["contact"]["_id"] == str(oid)
    assert data["contact"]["emailKey"] == EMAIL.lower() and data["contact"]["firstName"] == FIRST
    assert data["contact"]["shippingAddress"]["line1"] == STREET
    assert data["contact"]["totalSpent"] == "150.00"
    assert "activity" not in data["contact"]
    # The whole log, archive included, newest first.
    assert len(data["activity"]) == stored["activityCount"] > SPILL_AT
    assert [e["at"] for e in data["activity"]] == sorted(
        (e["at"] for e in data["activity"]), reverse=True
    )
    assert f"message {SPILL_AT - 1} from {FIRST}" in {e.get("text") for e in data["activity"]}
    assert [n["text"] for n in data["notes"]] == [f"{FIRST} asked about lamps"]
    assert sorted(o["number"] for o in data["orders"]) == ["S-0", "S-1", "S-2"]
    assert data["orders"][0]["total"] == "100.00"
    assert sorted(m["subject"] for m in data["messages"]) == ["Hello Annalise", "Old"]
    assert [(e["state"], e["source"], e["evidence"]) for e in data["consentHistory"]] == [
        ("SUBSCRIBED", "CONTACT_FORM", "Yes, Annalise, send news")
    ]
    assert data["exportedAt"].endswith("+00:00")

    assert (await api.data(EXPORT, {"id": encode_id("Contact", ObjectId())}))[
        "contactDataExport"
    ] is None
    assert (await api.data(EXPORT, {"id": "garbage"}))["contactDataExport"] is None
    for role in ("STAFF", "READER"):
        body = await as_role(role).gql(EXPORT, {"id": gid})
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    other = await as_role("OTHER").gql(EXPORT, {"id": gid})
    assert other["data"] == {"contactDataExport": None}


def _traces(docs: list[dict], needles: list[str]) -> list[str]:
    found = []
    for doc in docs:
        text = json_util.dumps(doc).lower()
        found.extend(
            f"{needle} in {doc.get('_id')}" for needle in needles if needle.lower() in text
        )
    return found


async def test_erasure_leaves_no_trace_of_the_person_and_keeps_the_books(
    api, as_role, database, person
):
    gid, oid = person
    bob_order = await database.orders.find_one({"number": "B-1"})
    orders_before = await database.orders.count_documents({"shopId": SHOP})
    needles = [EMAIL, FIRST, LAST, PHONE, PHONE_GIVEN, "70 123 45 67", "701234567", STREET]
    before = [doc for name in COLLECTIONS for doc in await database.db[name].find({}).to_list()]
    # The search does find the person beforehand: in the contact, its orders, archive and messages.
    assert len(_traces(before, needles)) > 20

    data = await api.data(ERASE, {"id": gid})

    assert data["contactErase"] == {"deletedIds": [gid], "userErrors": []}
    everything = [doc for name in COLLECTIONS for doc in await database.db[name].find({}).to_list()]
    assert _traces(everything, needles) == []
    # The orders stay for the books, with their money and without the person.
    assert await database.orders.count_documents({"shopId": SHOP}) == orders_before
    mine = (
        await database.orders.find({"number": {"$in": ["S-0", "S-1", "S-2"]}})
        .sort("number")
        .to_list()
    )
    assert [str(o["total"]) for o in mine] == ["100.00", "100.00", "50.00"]
    placeholders = {o["email"] for o in mine}
    assert len(placeholders) == 1 and placeholders.pop().endswith("@erased.invalid")
    for o in mine:
        assert o["contactId"] is None
        assert all(
            o[k] is None
            for k in ("firstName", "lastName", "phone", "shippingAddress", "billingAddress")
        )
    assert await database.orders.find_one({"number": "B-1"}) == bob_order
    assert await database.activity_archive.count_documents({"contactId": oid}) == 0
    assert await database.messages.count_documents({}) == 0
    assert (await database.labels.find_one({"shopId": SHOP, "key": "vip"}))["contactCount"] == 0
    assert (await api.data("query($id: ID!) { contact(id: $id) { id } }", {"id": gid}))[
        "contact"
    ] is None
    assert (await api.data(EXPORT, {"id": gid}))["contactDataExport"] is None


# Each request spends from its key's budget; that bookkeeping is no shop data.
DATA_COLLECTIONS = [name for name in COLLECTIONS if name != "throttle"]


async def test_erasure_refusals_change_nothing(api, as_role, database, person):
    gid, _ = person
    before = {
        name: await database.db[name].find({}).sort("_id").to_list() for name in DATA_COLLECTIONS
    }

    for value in (encode_id("Contact", ObjectId()), "garbage"):
        data = await api.data(ERASE, {"id": value})
        assert data["contactErase"] == {
            "deletedIds": [],
            "userErrors": [{"field": ["id"], "message": "Contact not found.", "code": "NOT_FOUND"}],
        }
    for role in ("STAFF", "READER"):
        body = await as_role(role).gql(ERASE, {"id": gid})
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    foreign = await as_role("OTHER").data(ERASE, {"id": gid})
    assert foreign["contactErase"]["userErrors"][0]["code"] == "NOT_FOUND"

    assert {
        name: await database.db[name].find({}).sort("_id").to_list() for name in DATA_COLLECTIONS
    } == before


async def test_messages_to_an_earlier_contact_of_the_address_are_exported_and_erased(api, database):
    create = "mutation($e: String!) { contactCreate(input: {email: $e}) { contact { id } } }"
    send = """mutation($id: ID!) { messageSend(contactId: $id, subject: "Hi", body: "Hello") {
      userErrors { code } } }"""
    first = (await api.data(create, {"e": "Mia.Berg@example.com"}))["contactCreate"]["contact"][
        "id"
    ]
    assert (await api.data(send, {"id": first}))["messageSend"]["userErrors"] == []
    await api.data(
        "mutation($id: ID!) { contactsDelete(ids: [$id]) { deletedIds } }", {"id": first}
    )
    # The same person again, in another letter case.
    again = (await api.data(create, {"e": "mia.berg@EXAMPLE.com"}))["contactCreate"]["contact"][
        "id"
    ]

    exported = (await api.data(EXPORT, {"id": again}))["contactDataExport"]
    assert [(m["to"], m["toKey"]) for m in exported["messages"]] == [
        ("Mia.Berg@example.com", "mia.berg@example.com")
    ]
    erased = (await api.data(ERASE, {"id": again}))["contactErase"]
    assert erased["userErrors"] == []
    assert await database.messages.count_documents({}) == 0
