"""Order statistics rules to the edge: which orders count, and what starting or ending to count stores.

tests/test_orders.py and tests/test_order_transaction.py tell the story
through the API (an order reported, canceled, replayed); these pin the
rules underneath: only OPEN and FULFILLED orders count, the exact moves of
`orderCount`, `totalSpent` (exact decimals) and `orderRev`, how the first
and last order times widen, and how they are derived again (or removed,
never left null) when an order stops counting, from this contact's counted
orders in this shop as the transaction sees them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from conftest import OTHER_SHOP, SHOP

from resolvers import activity
from resolvers.contacts import new_contact
from resolvers.order_stats import (
    counted,
    counted_bounds,
    first_stats,
    stats_update,
    uncount_update,
)

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
AT = dt.datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)  # the cancel's own time


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def order(
    placed: dt.datetime | None,
    total: str = "10.00",
    status: str = "OPEN",
    contact_id: ObjectId | None = None,
    shop: str = SHOP,
) -> dict[str, Any]:
    oid = ObjectId()
    return {
        "_id": oid,
        "shopId": shop,
        "externalId": str(oid),
        "contactId": contact_id,
        "status": status,
        "placedAt": placed,
        "total": Decimal128(total),
    }


# -- which orders count --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "counts"),
    [("OPEN", True), ("FULFILLED", True), ("CANCELED", False), ("DRAFT", False), (None, False)],
)
def test_only_open_and_fulfilled_orders_count(status, counts):
    assert counted(status) is counts


# -- the moves -----------------------------------------------------------------


def test_an_order_starting_to_count_adds_itself_and_widens_both_times():
    assert stats_update(order(day(2), "19.99"), +1) == {
        "$inc": {"orderCount": 1, "totalSpent": Decimal128("19.99"), "orderRev": 1},
        "$min": {"firstOrderAt": day(2)},
        "$max": {"lastOrderAt": day(2)},
    }


def test_an_order_ending_to_count_takes_itself_away_and_leaves_the_times_alone():
    assert stats_update(order(day(2), "19.99"), -1) == {
        "$inc": {"orderCount": -1, "totalSpent": Decimal128("-19.99"), "orderRev": 1}
    }


def test_a_free_order_still_counts_as_an_order():
    assert stats_update(order(day(0), "0.00"), +1)["$inc"] == {
        "orderCount": 1,
        "totalSpent": Decimal128("0.00"),
        "orderRev": 1,
    }


@pytest.mark.parametrize("status", ["OPEN", "FULFILLED"])
def test_a_contacts_only_counted_order_is_all_its_statistics(status):
    first = order(day(3), "42.50", status)
    assert first_stats(first) == {
        "orderCount": 1,
        "totalSpent": Decimal128("42.50"),
        "firstOrderAt": day(3),
        "lastOrderAt": day(3),
        "orderRev": 1,
    }


@pytest.mark.parametrize("status", ["CANCELED", "DRAFT"])
def test_a_contacts_only_order_that_does_not_count_leaves_no_statistics(status):
    assert first_stats(order(day(3) if status == "CANCELED" else None, "42.50", status)) == {
        "orderRev": 1
    }


# -- stored contacts -------------------------------------------------------------


async def stored_customer(database: Any, shop: str = SHOP, **stats: Any) -> ObjectId:
    email = f"c{ObjectId()}@example.com"
    doc = new_contact(shop, email, email, "CUSTOMER", {}, T0, entries=[])
    doc.update({"orderRev": 4, **stats})
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def contact_doc(database: Any, oid: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": oid})
    assert doc is not None
    return doc


async def record(database: Any, contact_id: ObjectId, *orders: dict[str, Any]) -> None:
    """Store the orders and move the contact's statistics for each counted one."""
    for placed in orders:
        placed["contactId"] = contact_id
        await database.orders.insert_one(placed)
        if counted(placed["status"]):
            await database.contacts.update_one({"_id": contact_id}, stats_update(placed, +1))


def statistics(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        k: doc.get(k, "absent")
        for k in ("orderCount", "totalSpent", "firstOrderAt", "lastOrderAt", "orderRev")
    }


async def test_orders_recorded_out_of_order_leave_exact_statistics(database):
    # A new contact has no times at all (never null): the first $min sets it.
    oid = await stored_customer(database)
    await record(
        database,
        oid,
        order(day(2), "19.99"),
        order(day(0), "0.10"),
        order(day(5), "5.00", "CANCELED"),
        order(None, "99.00", "DRAFT"),
        order(day(1), "0.20", "FULFILLED"),
    )
    assert statistics(await contact_doc(database, oid)) == {
        "orderCount": 3,
        "totalSpent": Decimal128("20.29"),
        "firstOrderAt": day(0),
        "lastOrderAt": day(2),
        "orderRev": 7,
    }


# -- the counted orders' bounds ----------------------------------------------------


async def test_the_bounds_are_those_of_this_contacts_counted_orders_in_this_shop(database):
    oid = await stored_customer(database)
    other = await stored_customer(database)
    await record(
        database,
        oid,
        order(day(-3), status="CANCELED"),
        order(day(1)),
        order(day(4), status="FULFILLED"),
        order(day(2)),
        order(day(9), status="CANCELED"),
        order(None, status="DRAFT"),
    )
    await record(database, other, order(day(-5)), order(day(12)))
    # The same contact id in another shop is another shop's business.
    await database.orders.insert_many(
        [
            order(day(-9), contact_id=oid, shop=OTHER_SHOP),
            order(day(20), contact_id=oid, shop=OTHER_SHOP),
        ]
    )
    assert await counted_bounds(database, SHOP, oid, None) == (day(1), day(4))
    assert await counted_bounds(database, SHOP, other, None) == (day(-5), day(12))


async def test_a_contact_without_counted_orders_has_no_bounds(database):
    oid = await stored_customer(database)
    await record(database, oid, order(day(1), status="CANCELED"), order(None, status="DRAFT"))
    assert await counted_bounds(database, SHOP, oid, None) == (None, None)
    assert await counted_bounds(database, SHOP, ObjectId(), None) == (None, None)
    await database.orders.insert_one(order(day(3), contact_id=oid, shop=OTHER_SHOP))
    assert await counted_bounds(database, SHOP, oid, None) == (None, None)


async def test_the_bounds_are_as_the_transaction_sees_them(database):
    oid = await stored_customer(database)
    await record(database, oid, order(day(1)), order(day(4)))
    earlier = order(day(-2), contact_id=oid)

    async def work(session: Any) -> tuple[Any, Any]:
        await database.orders.insert_one(earlier, session=session)
        await database.orders.update_one(
            {"contactId": oid, "placedAt": day(4)},
            {"$set": {"status": "CANCELED"}},
            session=session,
        )
        return await counted_bounds(database, SHOP, oid, session)

    assert await activity.in_transaction(database, work) == (day(-2), day(1))


# -- an order that stops counting ------------------------------------------------------


async def stop_counting(
    database: Any, contact_id: ObjectId, placed: dict[str, Any], status: str = "CANCELED"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The order's change and the contact's, in one transaction; (the update, the stored contact)."""

    async def work(session: Any) -> dict[str, Any]:
        await database.orders.update_one(
            {"_id": placed["_id"]}, {"$set": {"status": status}}, session=session
        )
        contact = await database.contacts.find_one({"_id": contact_id}, session=session)
        update = await uncount_update(
            database, SHOP, contact, {**placed, "status": status}, AT, session
        )
        await database.contacts.update_one({"_id": contact_id}, update, session=session)
        return update

    update = await activity.in_transaction(database, work)
    return update, await contact_doc(database, contact_id)


async def test_an_order_between_the_first_and_the_last_leaves_both_times(database):
    oid = await stored_customer(database)
    middle = order(day(1), "0.20")
    await record(database, oid, order(day(0), "0.10"), middle, order(day(2), "19.99"))
    update, doc = await stop_counting(database, oid, middle)
    # Both times are held by other orders: no read of the orders, no time written.
    assert update == {
        "$inc": {"orderCount": -1, "totalSpent": Decimal128("-0.20"), "orderRev": 1},
        "$set": {"updatedAt": AT},
    }
    assert statistics(doc) == {
        "orderCount": 2,
        "totalSpent": Decimal128("20.09"),
        "firstOrderAt": day(0),
        "lastOrderAt": day(2),
        "orderRev": 8,
    }
    assert doc["updatedAt"] == AT


@pytest.mark.parametrize(
    ("which", "left"),
    [(0, (day(1), day(2))), (2, (day(0), day(1)))],
    ids=["the first", "the last"],
)
async def test_an_order_at_either_end_moves_that_time_to_the_next_counted_order(
    database, which, left
):
    oid = await stored_customer(database)
    orders = [order(day(0), "0.10"), order(day(1), "0.20"), order(day(2), "19.99")]
    await record(database, oid, *orders, order(day(-1), status="CANCELED"))
    update, doc = await stop_counting(database, oid, orders[which])
    assert update["$set"] == {"updatedAt": AT, "firstOrderAt": left[0], "lastOrderAt": left[1]}
    assert "$unset" not in update
    assert (doc["firstOrderAt"], doc["lastOrderAt"]) == left
    assert doc["orderCount"] == 2 and doc["orderRev"] == 8
    assert doc["updatedAt"] == AT


async def test_an_order_sharing_its_time_with_another_leaves_that_time(database):
    oid = await stored_customer(database)
    twin = order(day(0), "3.00")
    await record(database, oid, order(day(0), "2.00"), twin)
    _, doc = await stop_counting(database, oid, twin, "DRAFT")
    assert statistics(doc) == {
        "orderCount": 1,
        "totalSpent": Decimal128("2.00"),
        "firstOrderAt": day(0),
        "lastOrderAt": day(0),
        "orderRev": 7,
    }


async def test_the_last_counted_order_takes_both_times_away_never_leaving_null(database):
    oid = await stored_customer(database)
    only = order(day(3), "19.99", "FULFILLED")
    await record(database, oid, only, order(day(1), status="CANCELED"))
    update, doc = await stop_counting(database, oid, only)
    assert update["$unset"] == {"firstOrderAt": "", "lastOrderAt": ""}
    assert update["$set"] == {"updatedAt": AT}
    assert statistics(doc) == {
        "orderCount": 0,
        "totalSpent": Decimal128("0.00"),
        "firstOrderAt": "absent",
        "lastOrderAt": "absent",
        "orderRev": 6,
    }
    assert doc["updatedAt"] == AT


@pytest.mark.parametrize(
    "missing",
    [("firstOrderAt",), ("lastOrderAt",), ("firstOrderAt", "lastOrderAt")],
    ids=["no first time", "no last time", "no times"],
)
async def test_a_contact_missing_a_time_gets_both_derived_again(database, missing):
    # Stored before the times were kept, or between two steps of the repair.
    oid = await stored_customer(database)
    middle = order(day(1), "0.20")
    await record(database, oid, order(day(0), "0.10"), middle, order(day(2), "19.99"))
    await database.contacts.update_one({"_id": oid}, {"$unset": dict.fromkeys(missing, "")})
    update, doc = await stop_counting(database, oid, middle)
    assert update["$set"] == {"updatedAt": AT, "firstOrderAt": day(0), "lastOrderAt": day(2)}
    assert (doc["firstOrderAt"], doc["lastOrderAt"]) == (day(0), day(2))
    assert doc["orderCount"] == 2


async def test_another_shops_orders_of_the_same_contact_id_hold_no_time(database):
    oid = await stored_customer(database)
    last = order(day(2), "19.99")
    await record(database, oid, order(day(0), "0.10"), last)
    await database.orders.insert_one(order(day(7), contact_id=oid, shop=OTHER_SHOP))
    _, doc = await stop_counting(database, oid, last)
    assert (doc["firstOrderAt"], doc["lastOrderAt"]) == (day(0), day(0))
