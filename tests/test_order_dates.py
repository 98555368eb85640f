"""First and last order times: set by the first counted order whatever came before, and repaired.

BSON orders null below every date, so a stored `firstOrderAt: null` would
keep `$min` from ever setting it. These times are absent until a contact
has a counted order, and a migration repairs contacts stored with nulls.
"""

from __future__ import annotations

import datetime as dt

from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, at, contact_doc, order_doc

from graph.types.node import decode_id
from resolvers.migrations import MIGRATIONS, _repair_batch, repair_order_dates, run_migrations

CREATE = """
mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } userErrors { code } } }
"""
RECORD = """
mutation($input: OrderInput!) {
  orderRecord(input: $input) {
    order { id }
    contact { id kind orderCount firstOrderAt lastOrderAt }
    userErrors { field code }
  }
}
"""
CANCEL = """
mutation($id: ID!) {
  orderCancel(id: $id) { contact { orderCount firstOrderAt lastOrderAt } userErrors { code } }
}
"""
MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) { contact { id } userErrors { code } }
}
"""


def order(external_id: str, placed: dt.datetime, email: str = "ann@example.com") -> dict:
    return {
        "externalId": external_id,
        "email": email,
        "currencyCode": "EUR",
        "placedAt": placed.isoformat(),
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "10.00"}],
    }


def when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


async def stored(database, gid: str) -> dict:
    doc = await database.contacts.find_one({"_id": decode_id(gid, "Contact")})
    assert doc is not None
    return doc


async def test_a_lead_that_orders_gets_its_first_order_time(api, database):
    gid = (await api.data(CREATE, {"email": "ann@example.com"}))["contactCreate"]["contact"]["id"]
    lead = await stored(database, gid)
    assert "firstOrderAt" not in lead and "lastOrderAt" not in lead

    result = (await api.data(RECORD, {"input": order("A-1", at(1))}))["orderRecord"]

    contact = result["contact"]
    assert (contact["id"], contact["kind"], contact["orderCount"]) == (gid, "CUSTOMER", 1)
    assert when(contact["firstOrderAt"]) == at(1) and when(contact["lastOrderAt"]) == at(1)
    doc = await stored(database, gid)
    assert (doc["firstOrderAt"], doc["lastOrderAt"]) == (at(1), at(1))


async def test_a_customer_whose_orders_were_all_canceled_orders_again(api, database):
    first = (await api.data(RECORD, {"input": order("A-1", at(1))}))["orderRecord"]
    gid = first["contact"]["id"]

    canceled = (await api.data(CANCEL, {"id": first["order"]["id"]}))["orderCancel"]["contact"]
    assert canceled == {"orderCount": 0, "firstOrderAt": None, "lastOrderAt": None}
    doc = await stored(database, gid)
    assert "firstOrderAt" not in doc and "lastOrderAt" not in doc

    again = (await api.data(RECORD, {"input": order("A-2", at(5))}))["orderRecord"]["contact"]
    assert again["orderCount"] == 1
    assert when(again["firstOrderAt"]) == at(5) and when(again["lastOrderAt"]) == at(5)


async def test_merged_leads_store_no_order_times_and_their_first_order_sets_them(api, database):
    ids = [
        (await api.data(CREATE, {"email": email}))["contactCreate"]["contact"]["id"]
        for email in ("ann@example.com", "ann.b@example.com")
    ]
    merged = (await api.data(MERGE, {"target": ids[0], "sources": ids[1:]}))["contactsMerge"]
    assert merged["userErrors"] == []
    doc = await stored(database, ids[0])
    assert not {"firstOrderAt", "lastOrderAt", "activityArchivedAt"} & doc.keys()

    contact = (await api.data(RECORD, {"input": order("A-1", at(2))}))["orderRecord"]["contact"]
    assert contact["id"] == ids[0] and when(contact["firstOrderAt"]) == at(2)


async def _broken_contacts(database) -> dict[str, dict]:
    """Contacts as older versions stored them: null order times, whatever their orders."""
    lead = contact_doc("lead@example.com", firstOrderAt=None, lastOrderAt=None)
    # Ordered as a lead: $min kept the null, $max set the last time.
    customer = contact_doc(
        "buyer@example.com", orders=2, firstOrderAt=None, lastOrderAt=at(5), orderRev=3
    )
    elsewhere = contact_doc(
        "far@example.com", shop=OTHER_SHOP, orders=1, firstOrderAt=None, lastOrderAt=at(4)
    )
    healthy = contact_doc("fine@example.com", orders=1, firstOrderAt=at(3), lastOrderAt=at(3))
    await add_contacts(database, lead, customer, elsewhere, healthy)
    await database.orders.insert_many(
        [
            order_doc(customer, "10.00", status="CANCELED", placed=at(1)),  # does not count
            order_doc(customer, "10.00", status="OPEN", placed=at(2)),
            order_doc(customer, "10.00", status="FULFILLED", placed=at(5)),
            order_doc(elsewhere, "10.00", placed=at(4)),
            order_doc(healthy, "10.00", placed=at(3)),
        ]
    )
    return {"lead": lead, "customer": customer, "elsewhere": elsewhere, "healthy": healthy}


async def _times(database, doc: dict) -> tuple:
    found = await database.contacts.find_one({"_id": doc["_id"]})
    return tuple(found.get(name, "absent") for name in ("firstOrderAt", "lastOrderAt"))


async def test_the_repair_derives_the_first_order_time_from_the_counted_orders(database):
    docs = await _broken_contacts(database)

    assert await repair_order_dates(database) == 3

    assert await _times(database, docs["customer"]) == (at(2), at(5))
    assert await _times(database, docs["elsewhere"]) == (at(4), at(4))
    assert await _times(database, docs["lead"]) == ("absent", "absent")
    assert await _times(database, docs["healthy"]) == (at(3), at(3))
    # Nothing is left to do: a second run changes nothing.
    assert await repair_order_dates(database) == 0


async def test_a_repaired_lead_gets_its_first_order_time_from_its_next_order(api, database):
    docs = await _broken_contacts(database)
    await repair_order_dates(database)

    contact = (await api.data(RECORD, {"input": order("L-1", at(6), "lead@example.com")}))[
        "orderRecord"
    ]["contact"]

    assert when(contact["firstOrderAt"]) == at(6) and when(contact["lastOrderAt"]) == at(6)
    assert await _times(database, docs["lead"]) == (at(6), at(6))


async def test_the_repair_never_overwrites_statistics_that_changed_after_it_read_them(database):
    docs = await _broken_contacts(database)
    customer = docs["customer"]
    # As read before an order landed and bumped orderRev.
    stale = {"_id": customer["_id"], "shopId": SHOP, "orderRev": customer["orderRev"] - 1}

    assert await _repair_batch(database, [stale]) == 0

    assert await _times(database, customer) == (None, at(5))


async def test_migrations_run_once_per_database(database):
    await database.migrations.delete_many({})  # a database from before any migration
    await _broken_contacts(database)

    assert await run_migrations(database) == [name for name, _ in MIGRATIONS]
    recorded = await database.migrations.find_one({"_id": "order-dates-never-null"})
    assert recorded is not None and recorded["result"] == 3

    late = contact_doc("late@example.com", firstOrderAt=None)
    await add_contacts(database, late)
    assert await run_migrations(database) == []
    assert await _times(database, late) == (None, "absent")


async def test_contacts_of_shops_without_broken_data_are_untouched(database):
    healthy = contact_doc("fine@example.com", orders=1, firstOrderAt=at(3), lastOrderAt=at(3))
    await add_contacts(database, healthy)
    before = await database.contacts.find_one({"_id": healthy["_id"]})

    assert await repair_order_dates(database) == 0

    assert await database.contacts.find_one({"_id": healthy["_id"]}) == before
