"""Changing a stored order to the edge: what a report or a cancel stores, and how the contact follows.

tests/test_orders.py tells the story through the API and the webhook; these
call `change_order` and `cancel_order` directly, with chosen times, for the
exact rules: canceled is final, an older report changes nothing, a refund
is stored exactly, and the contact's statistics and log move with the
status in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId

from resolvers import activity, order_cancel
from resolvers.errors import Refused
from resolvers.order_cancel import cancel_order, change_order

SHOP = "acme"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(order_cancel, "utc_now", lambda: NOW)
    monkeypatch.setattr(activity, "now", lambda: NOW)


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


async def stored_order(
    database: Any,
    contact_id: ObjectId | None,
    *,
    placed: dt.datetime = T0,
    status: str = "OPEN",
    total: str = "25.00",
    **fields: Any,
) -> dict[str, Any]:
    doc = {
        "_id": ObjectId(),
        "shopId": SHOP,
        "externalId": f"ext-{ObjectId()}",
        "number": "#1001",
        "contactId": contact_id,
        "status": status,
        "placedAt": placed,
        "total": Decimal128(total),
        "refunded": Decimal128("0"),
        "currency": "EUR",
        **fields,
    }
    await database.orders.insert_one(doc)
    return doc


async def stored_contact(database: Any, **fields: Any) -> ObjectId:
    doc = {
        "_id": ObjectId(),
        "shopId": SHOP,
        "emailKey": f"{ObjectId()}@example.com",
        "kind": "CUSTOMER",
        "orderCount": 1,
        "totalSpent": Decimal128("25.00"),
        "firstOrderAt": T0,
        "lastOrderAt": T0,
        "orderRev": 1,
        **fields,
    }
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def change(database: Any, order: dict[str, Any], **changes: Any) -> tuple[Any, Any]:
    async def work(session: Any) -> tuple[Any, Any]:
        return await change_order(database, SHOP, order, session=session, **changes)

    return await activity.in_transaction(database, work)


async def reread(database: Any, order: dict[str, Any]) -> dict[str, Any]:
    doc = await database.orders.find_one({"_id": order["_id"]})
    assert doc is not None
    return doc


async def contact(database: Any, contact_id: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": contact_id})
    assert doc is not None
    return doc


def stats(doc: dict[str, Any]) -> tuple[Any, ...]:
    return (
        doc.get("orderCount"),
        doc.get("totalSpent"),
        doc.get("firstOrderAt"),
        doc.get("lastOrderAt"),
        doc.get("orderRev"),
    )


def logged(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (e["kind"], e.get("text"), e.get("author"), e.get("orderId"), e["at"])
        for e in doc.get("activity", [])
    ]


# -- the order ---------------------------------------------------------------------


async def test_a_new_status_is_stored_with_the_time_of_the_change(database):
    order = await stored_order(database, None)

    changed, grown = await change(database, order, status="FULFILLED")

    assert grown is None  # no contact to follow
    assert changed == {**order, "status": "FULFILLED", "updatedAt": NOW}
    assert await reread(database, order) == changed


async def test_a_refund_is_stored_exactly(database):
    order = await stored_order(database, None)

    changed, _ = await change(database, order, refunded=Decimal("10.10"))

    assert (await reread(database, order))["refunded"] == Decimal128("10.10")
    assert changed["refunded"] == Decimal128("10.10")
    assert changed["status"] == "OPEN"


async def test_the_same_status_and_refund_again_change_nothing(database):
    order = await stored_order(database, None, refunded=Decimal128("5.00"))

    again, grown = await change(database, order, status="OPEN", refunded=Decimal("5.0"))

    assert (again, grown) == (order, None)
    assert await reread(database, order) == order


async def test_a_canceled_order_is_never_reopened(database):
    order = await stored_order(database, None, status="CANCELED")

    changed, _ = await change(database, order, status="OPEN", refunded=Decimal("25.00"))

    stored = await reread(database, order)
    assert stored["status"] == "CANCELED"
    assert stored["refunded"] == Decimal128("25.00")  # a refund still lands
    assert changed == stored


# -- reports in the shop's order -------------------------------------------------


async def test_a_refund_on_a_canceled_order_logs_no_second_cancel(database):
    contact_id = await stored_contact(database, orderCount=0, totalSpent=Decimal128("0"))
    order = await stored_order(database, contact_id, status="CANCELED")
    before = await contact(database, contact_id)

    _, grown = await change(database, order, status="CANCELED", refunded=Decimal("25.00"))

    assert grown is None
    assert await contact(database, contact_id) == before


async def test_a_report_older_than_the_last_applied_changes_nothing(database, commands):
    order = await stored_order(database, None, shopUpdatedAt=day(2))
    commands.reset()

    changed, grown = await change(
        database, order, status="FULFILLED", reported_at=day(2) - dt.timedelta(milliseconds=1)
    )

    assert (changed, grown) == (order, None)
    assert commands.on("orders") == []  # not even tried
    assert await reread(database, order) == order


async def test_a_report_as_old_as_the_last_applied_with_nothing_new_writes_nothing(
    database, commands
):
    order = await stored_order(database, None, shopUpdatedAt=day(2), status="FULFILLED")
    commands.reset()

    changed, grown = await change(database, order, status="FULFILLED", reported_at=day(2))

    assert (changed, grown) == (order, None)
    assert commands.on("orders") == []


async def test_a_report_as_old_as_the_last_applied_still_applies_its_change(database):
    order = await stored_order(database, None, shopUpdatedAt=day(2))

    changed, _ = await change(database, order, status="FULFILLED", reported_at=day(2))

    assert await reread(database, order) == changed
    assert (changed["status"], changed["shopUpdatedAt"]) == ("FULFILLED", day(2))


async def test_a_newer_report_moves_the_stored_time_even_without_a_change(database):
    order = await stored_order(database, None, shopUpdatedAt=day(2))

    changed, grown = await change(database, order, status="OPEN", reported_at=day(3))

    assert grown is None
    assert changed == {**order, "shopUpdatedAt": day(3)}
    assert await reread(database, order) == changed  # no updatedAt: nothing of ours changed


async def test_a_first_timed_report_sets_the_stored_time(database):
    order = await stored_order(database, None)

    changed, _ = await change(database, order, reported_at=day(1))

    assert changed == {**order, "shopUpdatedAt": day(1)}
    assert await reread(database, order) == changed


async def test_a_report_without_a_time_applies_and_leaves_the_stored_time(database):
    order = await stored_order(database, None, shopUpdatedAt=day(2))

    changed, _ = await change(database, order, status="FULFILLED")

    assert await reread(database, order) == changed
    assert changed["shopUpdatedAt"] == day(2)


async def test_an_order_reported_newer_meanwhile_is_answered_as_stored(database):
    # Read before a newer report landed: the filter refuses to undo it.
    await stored_order(database, None)  # another order, stored first
    order = await stored_order(database, None, shopUpdatedAt=day(2))
    await database.orders.update_one({"_id": order["_id"]}, {"$set": {"shopUpdatedAt": day(5)}})

    changed, grown = await change(database, order, status="FULFILLED", reported_at=day(3))

    current = await reread(database, order)
    assert (changed, grown) == (current, None)
    assert (current["status"], current["shopUpdatedAt"]) == ("OPEN", day(5))


async def test_an_order_deleted_meanwhile_is_not_found(database):
    await stored_order(database, None)  # another order, stored first
    order = await stored_order(database, None)
    await database.orders.delete_one({"_id": order["_id"]})

    with pytest.raises(Refused) as refused:
        await change(database, order, status="FULFILLED")

    assert [(p.field, p.message, p.code) for p in refused.value.problems] == [
        (("id",), "Order not found.", "NOT_FOUND")
    ]


# -- the contact follows ------------------------------------------------------------


async def test_canceling_a_counted_order_uncounts_it_and_logs_it(database):
    contact_id = await stored_contact(
        database,
        orderCount=2,
        totalSpent=Decimal128("35.50"),
        lastOrderAt=day(4),
        activityEmbedded=3,
    )
    order = await stored_order(database, contact_id, placed=day(4))
    await stored_order(database, contact_id, total="10.50")

    changed, grown = await change(database, order, status="CANCELED", author="Ada")

    assert grown == {"_id": contact_id, "activityEmbedded": 4}
    doc = await contact(database, contact_id)
    assert stats(doc) == (1, Decimal128("10.50"), T0, T0, 2)
    assert doc["updatedAt"] == NOW
    assert logged(doc) == [("ORDER_CANCELED", "Order #1001: 25.00 EUR", "Ada", order["_id"], NOW)]
    assert (doc["activityCount"], doc["activityEmbedded"]) == (1, 4)


async def test_a_draft_placed_for_real_starts_to_count(database):
    contact_id = await stored_contact(
        database, orderCount=0, totalSpent=Decimal128("0"), firstOrderAt=day(3), lastOrderAt=day(3)
    )
    order = await stored_order(database, contact_id, status="DRAFT", placed=day(1), total="7.25")

    _, grown = await change(database, order, status="OPEN")

    doc = await contact(database, contact_id)
    assert stats(doc) == (1, Decimal128("7.25"), day(1), day(3), 2)
    assert doc["updatedAt"] == NOW
    assert logged(doc) == []
    assert grown == {"_id": contact_id, "activityEmbedded": 0}


async def test_open_to_fulfilled_leaves_the_contact_alone(database):
    contact_id = await stored_contact(database)
    before = await contact(database, contact_id)
    order = await stored_order(database, contact_id)

    _, grown = await change(database, order, status="FULFILLED")

    assert grown is None
    assert await contact(database, contact_id) == before


async def test_canceling_an_uncounted_order_only_logs_it(database):
    contact_id = await stored_contact(database)
    order = await stored_order(database, contact_id, status="DRAFT")

    _, grown = await change(database, order, status="CANCELED")

    doc = await contact(database, contact_id)
    assert stats(doc) == (1, Decimal128("25.00"), T0, T0, 1)
    assert logged(doc) == [("ORDER_CANCELED", "Order #1001: 25.00 EUR", None, order["_id"], NOW)]
    assert grown == {"_id": contact_id, "activityEmbedded": 1}


async def test_an_order_of_a_deleted_contact_changes_alone(database):
    order = await stored_order(database, ObjectId())

    changed, grown = await change(database, order, status="CANCELED")

    assert grown is None
    assert (await reread(database, order))["status"] == "CANCELED" == changed["status"]


async def test_another_shop_s_contact_of_the_same_id_is_left_alone(database):
    contact_id = await stored_contact(database, shopId="other")
    before = await contact(database, contact_id)
    order = await stored_order(database, contact_id)

    _, grown = await change(database, order, status="CANCELED")

    assert grown is None
    assert await contact(database, contact_id) == before


# -- canceling from the admin side ---------------------------------------------------


async def test_cancel_order_cancels_uncounts_and_logs_in_one_go(database):
    contact_id = await stored_contact(database)
    earlier = await stored_order(database, None)
    order = await stored_order(database, contact_id)

    canceled = await cancel_order(database, SHOP, order["_id"], "Ada")

    assert canceled == {**order, "status": "CANCELED", "updatedAt": NOW}
    assert await reread(database, earlier) == earlier
    doc = await contact(database, contact_id)
    assert stats(doc)[:2] == (0, Decimal128("0.00"))
    assert "firstOrderAt" not in doc and "lastOrderAt" not in doc
    assert [e[:3] for e in logged(doc)] == [("ORDER_CANCELED", "Order #1001: 25.00 EUR", "Ada")]


async def test_canceling_again_changes_and_logs_nothing(database):
    contact_id = await stored_contact(database)
    order = await stored_order(database, contact_id)
    await cancel_order(database, SHOP, order["_id"], "Ada")
    before = await contact(database, contact_id), await reread(database, order)

    again = await cancel_order(database, SHOP, order["_id"], "Bob")

    assert again == before[1]
    assert (await contact(database, contact_id), await reread(database, order)) == before


async def test_the_order_is_read_in_the_cancel_s_own_transaction(database, commands):
    order = await stored_order(database, None)
    commands.reset()

    await cancel_order(database, SHOP, order["_id"], "Ada")

    (read,) = commands.documents("find", "orders")
    (write,) = commands.documents("update", "orders")
    assert "txnNumber" in read
    assert (read["lsid"], read["txnNumber"]) == (write["lsid"], write["txnNumber"])


async def test_a_change_whose_transaction_fails_leaves_the_order_and_the_contact(database):
    contact_id = await stored_contact(database)
    order = await stored_order(database, contact_id)
    before = await contact(database, contact_id)

    async def work(session: Any) -> None:
        await change_order(database, SHOP, order, status="CANCELED", session=session)
        raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError):
        await activity.in_transaction(database, work)

    assert await reread(database, order) == order
    assert await contact(database, contact_id) == before


async def test_an_older_report_read_before_a_newer_one_answers_the_order_as_it_now_is(database):
    order = await stored_order(database, None, shopUpdatedAt=day(2))

    async def work(session: Any) -> tuple[Any, Any]:
        await change_order(
            database, SHOP, order, status="FULFILLED", reported_at=day(5), session=session
        )
        # The same order as read before, reported older: the transaction's own write wins.
        return await change_order(
            database, SHOP, order, status="CANCELED", reported_at=day(3), session=session
        )

    answered, grown = await activity.in_transaction(database, work)

    assert grown is None
    assert (answered["status"], answered["shopUpdatedAt"]) == ("FULFILLED", day(5))
    assert answered == await reread(database, order)


async def test_two_cancels_in_one_transaction_see_each_other_s_change_to_the_contact(database):
    contact_id = await stored_contact(
        database, orderCount=3, totalSpent=Decimal128("75.00"), lastOrderAt=day(4)
    )
    await stored_order(database, contact_id)
    middle = await stored_order(database, contact_id, placed=day(2))
    last = await stored_order(database, contact_id, placed=day(4))

    async def work(session: Any) -> None:
        await change_order(database, SHOP, last, status="CANCELED", session=session)
        # Now the last counted order: the time moves back to the first.
        await change_order(database, SHOP, middle, status="CANCELED", session=session)

    await activity.in_transaction(database, work)

    assert stats(await contact(database, contact_id)) == (1, Decimal128("25.00"), T0, T0, 3)


async def test_a_change_reads_the_contact_s_order_times_and_log_size_but_not_its_log(
    database, commands
):
    contact_id = await stored_contact(database)
    order = await stored_order(database, contact_id)
    commands.reset()

    await cancel_order(database, SHOP, order["_id"], "Ada")

    (read,) = commands.documents("find", "contacts")
    assert read["projection"] == {"firstOrderAt": 1, "lastOrderAt": 1, "activityEmbedded": 1}


async def test_a_cancel_that_fills_the_log_moves_the_oldest_entries_to_the_archive(database):
    full = activity.SPILL_AT - 1
    entries = [
        activity.entry("ORDER_PLACED", text=f"#{n}", at=T0 + dt.timedelta(minutes=n))
        for n in range(full)
    ]
    contact_id = await stored_contact(
        database, activity=entries, activityCount=full, activityEmbedded=full
    )
    order = await stored_order(database, contact_id)

    await cancel_order(database, SHOP, order["_id"], "Ada")

    doc = await contact(database, contact_id)
    assert (doc["activityCount"], doc["activityEmbedded"]) == (full + 1, activity.EMBEDDED_KEEP)
    assert await database.activity_archive.count_documents({"contactId": contact_id}) == 1
    assert logged(doc)[-1][0] == "ORDER_CANCELED"


@pytest.mark.parametrize("shop", [SHOP, "other"])
async def test_canceling_an_unknown_or_another_shop_s_order_is_not_found(database, shop):
    theirs = await stored_order(database, None, shopId="other")
    order_id = theirs["_id"] if shop == "other" else ObjectId()

    with pytest.raises(Refused) as refused:
        await cancel_order(database, SHOP, order_id, "Ada")

    assert [(p.field, p.message, p.code) for p in refused.value.problems] == [
        (("id",), "Order not found.", "NOT_FOUND")
    ]
    assert await reread(database, theirs) == theirs
