"""A request's DataLoaders: fresh for every request, each reading only its shop.

Every loader of a `Loaders` is its own object with its own cache, so what
one request loaded is never answered to another, and each one is bound to
the shop it was built for: a contact, order, contract, page, count or
activity entry of another shop is never found through it, even by its id.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, contact_doc

from loaders.activity import ActivityQuery
from loaders.contact_records import CountKey, PageKey
from loaders.container import Loaders
from loaders.segments import match_key
from resolvers.validation import email_key

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
SHOWN = ("OPEN", "FULFILLED")
CONTRACT_STATUSES = ("ACTIVE", "PAUSED")
EVERY_LOADER = {
    "contact_by_id",
    "contact_by_email_key",
    "contact_count_by_match",
    "order_by_id",
    "orders_by_contact_id",
    "order_count_by_contact_id",
    "activity_page",
    "activity_entry_by_id",
    "subscription_contract_by_id",
    "subscription_contracts_by_contact_id",
    "subscription_contract_count_by_contact_id",
}


async def shop_with_history(database: Any, shop: str) -> dict[str, Any]:
    """One contact (the same address in every shop) with an order, a contract and a log entry.

    The order and the contract share their id, as documents of two collections may.
    """
    entry = {"_id": ObjectId(), "at": T0, "kind": "NOTE", "text": f"note in {shop}"}
    contact = contact_doc("Same@Example.test", shop=shop, activity=[entry])
    await add_contacts(database, contact)
    record_id = ObjectId()
    order = {
        "_id": record_id,
        "shopId": shop,
        "contactId": contact["_id"],
        "externalId": f"order-{shop}",
        "status": "OPEN",
        "placedAt": T0,
    }
    contract = {
        "_id": record_id,
        "shopId": shop,
        "contactId": contact["_id"],
        "externalId": f"contract-{shop}",
        "status": "ACTIVE",
        "startedAt": T0,
    }
    await database.orders.insert_one(order)
    await database.subscription_contracts.insert_one(contract)
    return {"contact": contact, "order": order, "contract": contract, "entry": entry}


async def test_two_requests_share_no_loader_and_no_cache(database):
    mine = await shop_with_history(database, SHOP)
    first, second = Loaders(database, SHOP), Loaders(database, SHOP)
    assert set(vars(first)) == EVERY_LOADER
    for name in EVERY_LOADER:
        assert getattr(first, name) is not getattr(second, name), name

    contact_id = mine["contact"]["_id"]
    before = await first.contact_by_id.load(contact_id)
    count_key = match_key({"shopId": SHOP})
    assert await first.contact_count_by_match.load(count_key) == 1
    assert await first.order_count_by_contact_id.load(CountKey(contact_id, SHOWN)) == 1

    await database.contacts.update_one({"_id": contact_id}, {"$set": {"firstName": "Changed"}})
    await add_contacts(database, contact_doc("new@example.test"))
    await database.orders.insert_one(
        {
            "_id": ObjectId(),
            "shopId": SHOP,
            "contactId": contact_id,
            "externalId": "second",
            "status": "OPEN",
            "placedAt": T0,
        }
    )

    # The first request keeps what it read; the next one reads afresh.
    assert (await first.contact_by_id.load(contact_id))["firstName"] == before["firstName"]
    assert (await second.contact_by_id.load(contact_id))["firstName"] == "Changed"
    assert await first.contact_count_by_match.load(count_key) == 1
    assert await second.contact_count_by_match.load(count_key) == 2
    assert await first.order_count_by_contact_id.load(CountKey(contact_id, SHOWN)) == 1
    assert await second.order_count_by_contact_id.load(CountKey(contact_id, SHOWN)) == 2


async def test_contacts_are_found_only_in_the_requests_shop(database):
    mine = await shop_with_history(database, SHOP)
    theirs = await shop_with_history(database, OTHER_SHOP)
    loaders = Loaders(database, SHOP)
    key = email_key("same@example.test")

    assert (await loaders.contact_by_id.load(mine["contact"]["_id"]))["_id"] == mine["contact"][
        "_id"
    ]
    assert await loaders.contact_by_id.load(theirs["contact"]["_id"]) is None
    assert (await loaders.contact_by_email_key.load(key))["_id"] == mine["contact"]["_id"]

    other = Loaders(database, OTHER_SHOP)
    assert (await other.contact_by_email_key.load(key))["_id"] == theirs["contact"]["_id"]
    assert await other.contact_by_id.load(mine["contact"]["_id"]) is None


async def test_counts_by_condition_are_exact(database):
    await shop_with_history(database, SHOP)
    await shop_with_history(database, OTHER_SHOP)
    await add_contacts(database, contact_doc("b@example.test"), contact_doc("c@example.test"))
    loaders = Loaders(database, SHOP)
    assert await loaders.contact_count_by_match.load(match_key({"shopId": SHOP})) == 3
    assert await loaders.contact_count_by_match.load(match_key({"shopId": OTHER_SHOP})) == 1


async def test_orders_come_from_the_orders_of_the_requests_shop(database):
    mine = await shop_with_history(database, SHOP)
    theirs = await shop_with_history(database, OTHER_SHOP)
    loaders = Loaders(database, SHOP)
    contact_id = mine["contact"]["_id"]

    assert await loaders.order_by_id.load(mine["order"]["_id"]) == mine["order"]
    assert await loaders.order_by_id.load(theirs["order"]["_id"]) is None

    page = await loaders.orders_by_contact_id.load(PageKey(contact_id, 10, None, SHOWN))
    assert [row["externalId"] for row in page.rows] == [f"order-{SHOP}"]
    assert await loaders.order_count_by_contact_id.load(CountKey(contact_id, SHOWN)) == 1

    other_contact = theirs["contact"]["_id"]
    page = await loaders.orders_by_contact_id.load(PageKey(other_contact, 10, None, SHOWN))
    assert page.rows == []
    assert await loaders.order_count_by_contact_id.load(CountKey(other_contact, SHOWN)) == 0


async def test_contracts_come_from_the_contracts_of_the_requests_shop(database):
    mine = await shop_with_history(database, SHOP)
    theirs = await shop_with_history(database, OTHER_SHOP)
    loaders = Loaders(database, SHOP)
    contact_id = mine["contact"]["_id"]
    statuses = CONTRACT_STATUSES

    assert (
        await loaders.subscription_contract_by_id.load(mine["contract"]["_id"]) == mine["contract"]
    )
    assert await loaders.subscription_contract_by_id.load(theirs["contract"]["_id"]) is None

    by_contact = loaders.subscription_contracts_by_contact_id
    page = await by_contact.load(PageKey(contact_id, 10, None, statuses))
    assert [row["externalId"] for row in page.rows] == [f"contract-{SHOP}"]
    count = loaders.subscription_contract_count_by_contact_id
    assert await count.load(CountKey(contact_id, statuses)) == 1

    other_contact = theirs["contact"]["_id"]
    assert (await by_contact.load(PageKey(other_contact, 10, None, statuses))).rows == []
    assert await count.load(CountKey(other_contact, statuses)) == 0


async def test_activity_is_read_only_from_the_requests_shop(database):
    mine = await shop_with_history(database, SHOP)
    theirs = await shop_with_history(database, OTHER_SHOP)
    loaders = Loaders(database, SHOP)

    page = await loaders.activity_page.load(ActivityQuery(mine["contact"]["_id"], 10))
    assert page is not None
    assert [e["text"] for e in page.entries] == [f"note in {SHOP}"]
    assert page.total_count == 1
    assert await loaders.activity_page.load(ActivityQuery(theirs["contact"]["_id"], 10)) is None

    found = await loaders.activity_entry_by_id.load((mine["entry"]["_id"], mine["contact"]["_id"]))
    assert found is not None
    assert (found.contact_id, found.entry["text"]) == (mine["contact"]["_id"], f"note in {SHOP}")
    key = (theirs["entry"]["_id"], theirs["contact"]["_id"])
    assert await loaders.activity_entry_by_id.load(key) is None
