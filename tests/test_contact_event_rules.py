"""What each contact write records beside itself: its counter part and its outbound event.

The API tests see the counts and the events a write leaves; these call the
recording directly, in a transaction, for the exact event data (the fields
a new contact names, what an erasure leaves of earlier events) and the
exact counter change of each kind of write.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from bson import ObjectId

from resolvers.activity import in_transaction
from resolvers.contact_counts import contact_totals
from resolvers.contact_events import (
    contact_changed,
    contact_erased,
    contacts_created,
    contacts_deleted,
    contacts_merged,
    created_data,
)
from resolvers.events import contact_gid, event_body

SHOP = "acme"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
AT = dt.datetime(2126, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
ANN, BOB, CAT = (ObjectId(f"{n:024x}") for n in (1, 2, 3))


async def in_one_transaction(database: Any, write: Any) -> None:
    async def work(session: Any) -> None:
        await write(session)

    await in_transaction(database, work)


async def events(database: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    stored = await database.events.find({"shopId": SHOP}, sort=[("_id", 1)]).to_list()
    return [(e["type"], e["contactId"], e["data"]) for e in stored]


async def counts(database: Any) -> dict[str, int]:
    return await contact_totals(database, SHOP)


def counted(total: int = 0, customers: int = 0, leads: int = 0) -> dict[str, int]:
    return {"total": total, "CUSTOMER": customers, "LEAD": leads}


# -- created -------------------------------------------------------------------------


def test_a_new_contact_s_event_names_the_fields_that_hold_a_value():
    doc = {
        "_id": ANN,
        "email": "ann@example.com",
        "emailKey": "ann@example.com",  # stored, not an API field
        "kind": "LEAD",
        "firstName": "Ann",
        "lastName": "",
        "phone": None,
        "company": "ACME",
        "shippingAddress": {},
        "billingAddress": {"city": "Bonn"},
        "labels": [],
        "hasAccount": False,
        "notes": [{"text": "private"}],
        "createdAt": AT,
    }

    assert created_data(doc) == {
        "id": contact_gid(ANN),
        "email": "ann@example.com",
        "kind": "LEAD",
        "firstName": "Ann",
        "company": "ACME",
        "billingAddress": {"city": "Bonn"},
        "hasAccount": False,  # false is a value
        "createdAt": AT,
    }


def test_every_field_of_a_new_contact_is_named_when_set():
    values = {
        "email": "a@b.io",
        "kind": "CUSTOMER",
        "firstName": "A",
        "lastName": "B",
        "phone": "+4930123456",
        "company": "C",
        "shippingAddress": {"city": "X"},
        "billingAddress": {"city": "Y"},
        "labels": ["vip"],
        "hasAccount": True,
    }

    assert created_data({"_id": ANN, **values}) == {
        "id": contact_gid(ANN),
        **values,
        "createdAt": None,
    }


async def test_new_contacts_are_counted_by_kind_with_one_event_each(database):
    docs = [
        {"_id": ANN, "kind": "LEAD", "email": "ann@example.com", "createdAt": AT},
        {"_id": BOB, "kind": "CUSTOMER", "email": "bob@example.com", "createdAt": AT},
        {"_id": CAT, "kind": "LEAD", "email": "cat@example.com", "createdAt": AT},
    ]

    await in_one_transaction(
        database, lambda s: contacts_created(database, SHOP, iter(docs), session=s)
    )

    assert await counts(database) == counted(3, 1, 2)
    assert await events(database) == [
        ("CONTACT_CREATED", doc["_id"], created_data(doc)) for doc in docs
    ]


@pytest.mark.parametrize("record", [contacts_created, contacts_deleted])
async def test_no_contacts_record_nothing(database, record):
    await in_one_transaction(database, lambda s: record(database, SHOP, iter([]), session=s))

    assert await database.contact_counts.count_documents({}) == 0
    assert await database.events.count_documents({}) == 0


# -- deleted -------------------------------------------------------------------------


async def test_deleted_contacts_are_uncounted_by_kind_and_named_by_id_and_email(database):
    docs = [
        {"_id": ANN, "kind": "LEAD", "email": "ann@example.com", "firstName": "Ann"},
        {"_id": BOB, "kind": "LEAD"},
        {"_id": CAT, "kind": "CUSTOMER", "email": "cat@example.com"},
    ]

    await in_one_transaction(
        database, lambda s: contacts_deleted(database, SHOP, iter(docs), session=s)
    )

    assert await counts(database) == counted(-3, -1, -2)
    assert await events(database) == [
        ("CONTACT_DELETED", ANN, {"id": contact_gid(ANN), "email": "ann@example.com"}),
        ("CONTACT_DELETED", BOB, {"id": contact_gid(BOB), "email": None}),
        ("CONTACT_DELETED", CAT, {"id": contact_gid(CAT), "email": "cat@example.com"}),
    ]


# -- erased --------------------------------------------------------------------------


async def test_an_erasure_leaves_only_the_id_in_the_person_s_earlier_events(database):
    gid = contact_gid(ANN)
    told = {"id": gid, "email": "ann@example.com", "firstName": "Ann"}
    await database.events.insert_many(
        [
            {"shopId": SHOP, "contactId": ANN, "type": "CONTACT_CREATED", "data": told},
            {"shopId": SHOP, "contactId": BOB, "type": "CONTACT_CREATED", "data": {"id": "b"}},
            {"shopId": "other", "contactId": ANN, "type": "CONTACT_CREATED", "data": told},
        ]
    )
    endpoint = ObjectId()
    await database.webhook_deliveries.insert_many(
        [
            {
                "_id": n,
                "shopId": shop,
                "endpointId": endpoint,
                "contactId": contact,
                "type": "CONTACT_CREATED",
                "seq": AT,
                "body": event_body("CONTACT_CREATED", AT, told),
            }
            for n, shop, contact in ((1, SHOP, ANN), (2, SHOP, ANN), (3, SHOP, BOB), (4, "x", ANN))
        ]
    )

    await in_one_transaction(
        database,
        lambda s: contact_erased(database, SHOP, {"_id": ANN, "kind": "CUSTOMER"}, session=s),
    )

    assert await events(database) == [
        ("CONTACT_CREATED", ANN, {"id": gid}),
        ("CONTACT_CREATED", BOB, {"id": "b"}),
        ("CONTACT_ERASED", ANN, {"id": gid}),
    ]
    bodies = {
        d["_id"]: orjson.loads(d["body"])
        for d in await database.webhook_deliveries.find({}).to_list()
    }
    erased = {"type": "CONTACT_CREATED", "timestamp": "2126-02-03T04:05:06Z", "data": {"id": gid}}
    assert bodies[1] == bodies[2] == erased
    assert bodies[3]["data"] == bodies[4]["data"] == told  # another person; another shop
    assert (await database.events.find_one({"shopId": "other"}))["data"] == told
    assert await counts(database) == counted(-1, -1, 0)


async def test_an_erasure_scrubs_a_delivery_recorded_earlier_in_its_own_transaction(database):
    await database.webhook_endpoints.insert_one(
        {"shopId": SHOP, "enabled": True, "events": ["CONTACT_CREATED"]}
    )
    doc = {"_id": ANN, "kind": "LEAD", "email": "ann@example.com", "createdAt": AT}

    async def work(session: Any) -> None:
        await contacts_created(database, SHOP, [doc], session=session)
        await contact_erased(database, SHOP, doc, session=session)

    await in_transaction(database, work)

    (delivery,) = await database.webhook_deliveries.find({}).to_list()
    assert orjson.loads(delivery["body"])["data"] == {"id": contact_gid(ANN)}


# -- merged --------------------------------------------------------------------------


async def test_a_merge_uncounts_the_merged_and_recounts_the_survivor_s_new_kind(database):
    survivor = {"_id": ANN, "kind": "CUSTOMER"}
    merged = [{"_id": BOB, "kind": "CUSTOMER"}, {"_id": CAT, "kind": "LEAD"}]

    await in_one_transaction(
        database,
        lambda s: contacts_merged(database, SHOP, survivor, "LEAD", merged, session=s),
    )

    # Ann LEAD -> CUSTOMER; Bob and Cat gone.
    assert await counts(database) == counted(-2, 0, -2)
    assert await events(database) == [
        (
            "CONTACT_MERGED",
            ANN,
            {
                "id": contact_gid(ANN),
                "mergedIds": [contact_gid(BOB), contact_gid(CAT)],
                "kind": "CUSTOMER",
            },
        )
    ]


async def test_a_merge_keeping_the_survivor_s_kind_only_uncounts_the_merged(database):
    survivor = {"_id": ANN, "kind": "LEAD"}

    await in_one_transaction(
        database,
        lambda s: contacts_merged(
            database, SHOP, survivor, "LEAD", [{"_id": BOB, "kind": "LEAD"}], session=s
        ),
    )

    assert await counts(database) == counted(-1, 0, -1)


# -- changed -------------------------------------------------------------------------


async def test_a_change_names_its_fields_in_one_update_event(database):
    changed = {"lastOrderAt": AT, "orderCount": 2}

    await in_one_transaction(
        database, lambda s: contact_changed(database, SHOP, ANN, "CUSTOMER", changed, session=s)
    )

    assert await events(database) == [
        ("CONTACT_UPDATED", ANN, {"id": contact_gid(ANN), "lastOrderAt": AT, "orderCount": 2})
    ]
    assert await database.contact_counts.count_documents({}) == 0


async def test_a_lead_that_becomes_a_customer_moves_between_the_counts(database):
    await in_one_transaction(
        database,
        lambda s: contact_changed(database, SHOP, ANN, "LEAD", {"kind": "CUSTOMER"}, session=s),
    )

    assert await counts(database) == counted(0, 1, -1)
    assert await events(database) == [
        ("CONTACT_UPDATED", ANN, {"id": contact_gid(ANN), "kind": "CUSTOMER"})
    ]


async def test_no_change_records_nothing(database):
    await in_one_transaction(
        database, lambda s: contact_changed(database, SHOP, ANN, "LEAD", {}, session=s)
    )

    assert await database.events.count_documents({}) == 0
    assert await database.contact_counts.count_documents({}) == 0


async def test_nothing_is_recorded_when_the_write_s_transaction_fails(database):
    told = {"id": contact_gid(BOB), "email": "bob@example.com"}
    await database.events.insert_one(
        {"shopId": SHOP, "contactId": BOB, "type": "CONTACT_CREATED", "data": told}
    )
    await database.webhook_deliveries.insert_one(
        {
            "shopId": SHOP,
            "contactId": BOB,
            "type": "CONTACT_CREATED",
            "seq": AT,
            "body": event_body("CONTACT_CREATED", AT, told),
        }
    )
    before = (
        await database.events.find({}).to_list(),
        await database.webhook_deliveries.find({}).to_list(),
    )

    async def work(session: Any) -> None:
        await contacts_created(
            database, SHOP, [{"_id": ANN, "kind": "LEAD", "createdAt": AT}], session=session
        )
        await contact_erased(database, SHOP, {"_id": BOB, "kind": "LEAD"}, session=session)
        await contacts_deleted(database, SHOP, [{"_id": CAT, "kind": "LEAD"}], session=session)
        await contacts_merged(
            database,
            SHOP,
            {"_id": ANN, "kind": "CUSTOMER"},
            "LEAD",
            [{"_id": CAT, "kind": "LEAD"}],
            session=session,
        )
        await contact_changed(database, SHOP, ANN, "LEAD", {"kind": "CUSTOMER"}, session=session)
        raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        await in_transaction(database, work)

    assert (
        await database.events.find({}).to_list(),
        await database.webhook_deliveries.find({}).to_list(),
    ) == before
    assert await database.contact_counts.count_documents({}) == 0
