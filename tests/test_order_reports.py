"""Order reports are applied in the shop's order: one older than the report applied last changes nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from conftest import SHOP
from test_orders import at, contact_doc, record, record_ok

from resolvers.activity import in_transaction
from resolvers.order_cancel import change_order

STATISTICS = ("orderCount", "totalSpent", "firstOrderAt", "lastOrderAt", "orderRev")


async def stored(database) -> dict:  # type: ignore[no-untyped-def]
    order = await database.orders.find_one({"shopId": SHOP, "externalId": "A-1"})
    assert order is not None
    return order


def unchanged(before: dict, after: dict) -> None:
    assert after["activityCount"] == before["activityCount"]
    assert [e["_id"] for e in after["activity"]] == [e["_id"] for e in before["activity"]]
    for name in STATISTICS:
        assert after[name] == before[name], name


async def test_an_older_report_after_a_newer_one_changes_nothing(api, database):
    # The scenario: FULFILLED with 5 refunded, then the earlier OPEN report arrives late.
    await record_ok(api, status="OPEN", refunded="0", updatedAt=at(1))
    await record_ok(api, status="FULFILLED", refunded="5", updatedAt=at(2))
    before = await contact_doc(database)

    late = await record(api, status="OPEN", refunded="0", updatedAt=at(1))

    assert late["userErrors"] == []
    assert late["order"]["status"] == "FULFILLED" and late["order"]["refunded"]["amount"] == "5"
    order = await stored(database)
    assert order["status"] == "FULFILLED" and order["refunded"].to_decimal() == Decimal(5)
    assert order["shopUpdatedAt"] == dt.datetime.fromisoformat(at(2))
    unchanged(before, await contact_doc(database))


async def test_an_older_cancellation_does_not_cancel(api, database):
    await record_ok(api, updatedAt=at(3))
    before = await contact_doc(database)
    late = await record(api, status="CANCELED", updatedAt=at(2))
    assert late["userErrors"] == [] and late["order"]["status"] == "OPEN"
    after = await contact_doc(database)
    unchanged(before, after)
    assert after["orderCount"] == 1 and "ORDER_CANCELED" not in [
        e["kind"] for e in after["activity"]
    ]


async def test_a_newer_report_applies_and_an_equal_time_is_not_older(api, database):
    await record_ok(api, updatedAt=at(1))
    newer = await record_ok(api, status="FULFILLED", refunded="2", updatedAt=at(2))
    assert newer["order"]["status"] == "FULFILLED" and newer["order"]["refunded"]["amount"] == "2"
    same_time = await record_ok(api, status="FULFILLED", refunded="3", updatedAt=at(2))
    assert same_time["order"]["refunded"]["amount"] == "3"
    canceled = await record_ok(api, status="CANCELED", updatedAt=at(3))
    assert canceled["order"]["status"] == "CANCELED"
    assert canceled["contact"]["orderCount"] == 0
    assert (await stored(database))["shopUpdatedAt"] == dt.datetime.fromisoformat(at(3))


async def test_a_newer_report_that_changes_nothing_still_moves_the_time_on(api, database):
    await record_ok(api, updatedAt=at(1))
    await record_ok(api, updatedAt=at(3))  # the shop touched the order; nothing we keep changed
    assert (await stored(database))["shopUpdatedAt"] == dt.datetime.fromisoformat(at(3))
    late = await record_ok(api, status="FULFILLED", updatedAt=at(2))
    assert late["order"]["status"] == "OPEN"


async def test_a_report_without_updated_at_applies_as_before_and_keeps_the_time(api, database):
    await record_ok(api, status="FULFILLED", refunded="5", updatedAt=at(2))
    untimed = await record_ok(api, status="OPEN", refunded="1")
    assert untimed["order"]["status"] == "OPEN" and untimed["order"]["refunded"]["amount"] == "1"
    assert (await stored(database))["shopUpdatedAt"] == dt.datetime.fromisoformat(at(2))
    # The time applied last still holds older reports back.
    late = await record_ok(api, status="CANCELED", updatedAt=at(1))
    assert late["order"]["status"] == "OPEN"
    # An order first reported without a time takes the first time it is given.
    await record_ok(api, externalId="B-1")
    timed = await record_ok(api, externalId="B-1", status="FULFILLED", updatedAt=at(1))
    assert timed["order"]["status"] == "FULFILLED"


async def test_the_check_is_in_the_write_so_a_report_read_before_a_newer_one_cannot_undo_it(
    api, database
):
    await record_ok(api, updatedAt=at(1))
    read_early = await stored(database)  # a slower report read the order here ...
    await record_ok(api, updatedAt=at(3))  # ... a newer one landed meanwhile ...
    before = await contact_doc(database)

    # ... and the slower one, dated between the two, writes what it computed.
    order, contact = await in_transaction(
        database,
        lambda session: change_order(
            database,
            SHOP,
            read_early,
            status="CANCELED",
            refunded=Decimal(1),
            reported_at=dt.datetime.fromisoformat(at(2)),
            session=session,
        ),
    )

    assert contact is None and order["status"] == "OPEN"
    now = await stored(database)
    assert now["status"] == "OPEN" and now["refunded"].to_decimal() == 0
    assert now["shopUpdatedAt"] == dt.datetime.fromisoformat(at(3))
    unchanged(before, await contact_doc(database))


async def test_an_updated_at_in_the_future_is_refused(api, database):
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    result = await record(api, updatedAt=ahead)
    assert [(e["field"], e["code"]) for e in result["userErrors"]] == [
        (["input", "updatedAt"], "INVALID")
    ]
    assert await database.orders.count_documents({}) == 0
    assert await database.contacts.count_documents({}) == 0


async def test_an_order_stored_before_reports_had_times_takes_the_first_one(api, database):
    await record_ok(api)
    await database.orders.update_one({"externalId": "A-1"}, {"$unset": {"shopUpdatedAt": ""}})
    timed = await record_ok(api, status="FULFILLED", updatedAt=at(2))
    assert timed["order"]["status"] == "FULFILLED"
    assert (await stored(database))["shopUpdatedAt"] == dt.datetime.fromisoformat(at(2))
    assert (await record_ok(api, status="OPEN", updatedAt=at(1)))["order"]["status"] == "FULFILLED"
