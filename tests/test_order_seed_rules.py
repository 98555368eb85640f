"""Seeded orders: what `seed_orders` stores, and that the contacts look as if each order was recorded.

The promise: the orders are ordinary stored orders (exact Decimal128 money,
one of the counted or canceled statuses, times within the last two years)
and each contact's statistics, log and kind, and the shop's contact
counters, are what recording the same orders one by one (oldest first)
would have produced. These call `seed_orders` directly with a fixed random
seed and check the stored documents against rules computed here from the
stored orders themselves.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId

from resolvers import activity, order_seed
from resolvers.order_seed import SEED_PRODUCTS, seed_orders

SHOP, OTHER = "acme", "other"
NOW = dt.datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)
EARLIEST = NOW - dt.timedelta(minutes=2 * 365 * 24 * 60)
CREATED = NOW - dt.timedelta(days=800)
PRODUCTS = {sku: (title, price, ships) for title, sku, price, ships in SEED_PRODUCTS}
ADDRESS = {"line1": "Main St 1", "city": "Berlin", "country": "DE"}


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(order_seed, "utc_now", lambda: NOW)
    monkeypatch.setattr(activity, "now", lambda: NOW)


def contact_doc(n: int, kind: str | None = "LEAD", shop: str = SHOP, **fields: Any) -> dict:
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "email": f"Person{n}@Example.com",
        "emailKey": f"person{n}@example.com",
        "firstName": f"First{n}",
        "lastName": f"Last{n}",
        "phone": f"+4930{n:06d}",
        "shippingAddress": {**ADDRESS, "line2": f"flat {n}"},
        "activity": [{"_id": ObjectId(), "kind": "CONTACT_CREATED", "at": CREATED}],
        "activityCount": 1,
        "activityEmbedded": 1,
        **fields,
    }
    if kind is not None:
        doc["kind"] = kind
    return doc


async def inserted(database: Any, docs: list[dict]) -> list[dict]:
    if docs:
        await database.contacts.insert_many(docs)
    return docs


async def orders_of(database: Any, contact_id: ObjectId) -> list[dict]:
    return await database.orders.find({"contactId": contact_id}, sort=[("placedAt", 1)]).to_list()


async def stored_contact(database: Any, contact_id: ObjectId) -> dict:
    doc = await database.contacts.find_one({"_id": contact_id})
    assert doc is not None
    return doc


async def counter_parts(database: Any, shop: str = SHOP) -> list[dict]:
    parts = await database.contact_counts.find({"shopId": shop}).to_list()
    return [{k: v for k, v in part.items() if k not in ("_id", "shopId")} for part in parts]


def money(value: str) -> Decimal128:
    return Decimal128(value)


# -- the orders ----------------------------------------------------------------------


async def test_each_contact_gets_the_asked_number_of_orders_and_the_count_is_returned(database):
    docs = await inserted(database, [contact_doc(n) for n in range(3)])

    written = await seed_orders(database, SHOP, docs, 4, random.Random(11))

    assert written == 12
    assert await database.orders.count_documents({}) == 12
    for doc in docs:
        assert await database.orders.count_documents({"contactId": doc["_id"]}) == 4


async def test_one_order_per_contact_is_enough_to_seed(database):
    [doc] = await inserted(database, [contact_doc(1)])

    assert await seed_orders(database, SHOP, [doc], 1, random.Random(2)) == 1
    assert await database.orders.count_documents({"contactId": doc["_id"]}) == 1


async def test_an_order_holds_the_contacts_details_and_exact_money(database):
    docs = await inserted(database, [contact_doc(n) for n in range(6)])

    await seed_orders(database, SHOP, docs, 8, random.Random(5))

    orders = await database.orders.find({}).to_list()
    assert len(orders) == 48
    for order in orders:
        contact = next(d for d in docs if d["_id"] == order["contactId"])
        assert order["shopId"] == SHOP
        assert order["externalId"] == f"seed-{order['_id']}"
        assert order["number"] == "S-" + str(order["_id"])[-8:].upper()
        assert order["status"] in ("FULFILLED", "OPEN", "CANCELED")
        assert (order["email"], order["emailKey"]) == (contact["email"], contact["emailKey"])
        assert (order["firstName"], order["lastName"], order["phone"]) == (
            contact["firstName"],
            contact["lastName"],
            contact["phone"],
        )
        assert order["createdAt"] == order["updatedAt"] == order["placedAt"]
        assert EARLIEST <= order["placedAt"] <= NOW - dt.timedelta(minutes=1)
        assert order["currency"] == "EUR"
        assert order["billingAddress"] is None
        assert order["acceptsMarketing"] is False
        assert order["hasAccount"] is False

        lines = order["lineItems"]
        assert 1 <= len(lines) <= 3
        assert len({line["sku"] for line in lines}) == len(lines)  # no product twice
        subtotal = Decimal(0)
        for line in lines:
            title, price, ships = PRODUCTS[line["sku"]]
            assert line["title"] == title
            assert line["requiresShipping"] is ships
            assert 1 <= line["quantity"] <= 3
            assert line["unitPrice"] == Decimal128(price)
            assert line["total"] == Decimal128(price * line["quantity"])
            subtotal += price * line["quantity"]
        ships = any(line["requiresShipping"] for line in lines)
        shipping = Decimal("4.90") if ships else Decimal("0")
        tax = (subtotal * Decimal("0.19")).quantize(Decimal("0.01"))
        assert order["subtotal"] == Decimal128(subtotal)
        assert order["shipping"] == Decimal128(shipping)
        assert order["tax"] == Decimal128(tax)
        assert order["discount"] == Decimal128("0")
        assert order["refunded"] == Decimal128("0")
        assert order["total"] == Decimal128(subtotal + shipping + tax)
        assert order["shippingAddress"] == (contact["shippingAddress"] if ships else None)


async def test_the_seeded_orders_use_every_product_status_and_quantity(database):
    docs = await inserted(database, [contact_doc(n) for n in range(10)])

    await seed_orders(database, SHOP, docs, 20, random.Random(3))

    orders = await database.orders.find({}).to_list()
    lines = [line for order in orders for line in order["lineItems"]]
    assert {line["sku"] for line in lines} == set(PRODUCTS)
    assert {line["quantity"] for line in lines} == {1, 2, 3}
    assert {len(order["lineItems"]) for order in orders} == {1, 2, 3}
    statuses = Counter(order["status"] for order in orders)
    assert set(statuses) == {"FULFILLED", "OPEN", "CANCELED"}
    # Mostly fulfilled, some open, few canceled.
    assert statuses["FULFILLED"] > statuses["OPEN"] > statuses["CANCELED"]
    assert {order["shippingAddress"] is None for order in orders} == {True, False}
    # Spread over the last two years: both ends are reached.
    placed = sorted(order["placedAt"] for order in orders)
    assert placed[0] < EARLIEST + dt.timedelta(days=10)
    assert placed[-1] > NOW - dt.timedelta(days=10)


async def test_the_same_seed_gives_the_same_orders(database):
    first = await inserted(database, [contact_doc(n) for n in range(3)])
    second = await inserted(database, [contact_doc(n, shop=OTHER) for n in range(3)])

    await seed_orders(database, SHOP, first, 5, random.Random(42))
    await seed_orders(database, OTHER, second, 5, random.Random(42))

    def shape(order: dict) -> tuple:
        return (
            order["status"],
            order["placedAt"],
            order["total"],
            [(line["sku"], line["quantity"]) for line in order["lineItems"]],
        )

    for a, b in zip(first, second, strict=True):
        assert [shape(o) for o in await orders_of(database, a["_id"])] == [
            shape(o) for o in await orders_of(database, b["_id"])
        ]


async def test_a_fixed_seed_gives_a_fixed_shop(database):
    # The benchmarks compare runs on the same seeded data: seed 7 must stay seed 7.
    [doc] = await inserted(database, [contact_doc(1)])

    await seed_orders(database, SHOP, [doc], 12, random.Random(7))

    orders = await orders_of(database, doc["_id"])
    got = [
        (
            o["status"],
            (NOW - o["placedAt"]) // dt.timedelta(minutes=1),
            str(o["total"]),
            [(line["sku"], line["quantity"]) for line in o["lineItems"]],
        )
        for o in orders
    ]
    assert got == GOLDEN_SEED_7


# (status, minutes before now, total, lines), oldest first.
GOLDEN_SEED_7 = [
    ("FULFILLED", 909421, "72.02", [("COF-1000", 1), ("MUG-01", 3)]),
    ("FULFILLED", 828005, "426.37", [("COF-1000", 3), ("MUG-01", 3), ("GRN-200", 2)]),
    ("OPEN", 766906, "72.37", [("COF-1000", 3)]),
    ("FULFILLED", 679127, "109.02", [("GIFT-25", 3), ("MUG-01", 1)]),
    ("FULFILLED", 450255, "581.06", [("GRN-200", 3), ("MUG-01", 3), ("COF-1000", 3)]),
    ("FULFILLED", 316354, "174.93", [("CRS-ONL", 3)]),
    ("FULFILLED", 197406, "58.31", [("CRS-ONL", 1)]),
    ("FULFILLED", 180245, "460.65", [("GIFT-25", 3), ("TEA-SMP", 2), ("GRN-200", 2)]),
    ("FULFILLED", 151910, "159.59", [("GRN-200", 1)]),
    ("FULFILLED", 121633, "205.87", [("CRS-ONL", 2), ("GIFT-25", 3)]),
    ("OPEN", 101264, "366.52", [("COF-1000", 1), ("GRN-200", 2), ("GIFT-25", 1)]),
    ("FULFILLED", 78635, "536.44", [("COF-1000", 3), ("GRN-200", 3)]),
]


async def test_a_fixed_seed_gives_fixed_status_shares_within_two_years(database):
    # 300 orders of seed 1: mostly fulfilled, some open, few canceled, none older than two years.
    [doc] = await inserted(database, [contact_doc(1)])

    await seed_orders(database, SHOP, [doc], 300, random.Random(1))

    orders = await orders_of(database, doc["_id"])
    assert Counter(o["status"] for o in orders) == {"FULFILLED": 250, "OPEN": 37, "CANCELED": 13}
    assert orders[0]["placedAt"] >= EARLIEST
    assert (NOW - orders[0]["placedAt"]) // dt.timedelta(minutes=1) == 1_050_254


async def test_the_orders_are_in_the_shops_currency(database):
    await database.shops.insert_one({"_id": SHOP, "currency": "USD"})
    docs = await inserted(database, [contact_doc(1)])

    await seed_orders(database, SHOP, docs, 3, random.Random(1))

    assert {o["currency"] for o in await database.orders.find({}).to_list()} == {"USD"}
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "USD"


async def test_a_shop_without_a_currency_gets_euros_and_keeps_them(database):
    await database.shops.insert_one({"_id": SHOP, "name": "Acme"})
    docs = await inserted(database, [contact_doc(1)])

    await seed_orders(database, SHOP, docs, 3, random.Random(1))

    assert {o["currency"] for o in await database.orders.find({}).to_list()} == {"EUR"}
    assert await database.shops.find_one({"_id": SHOP}) == {
        "_id": SHOP,
        "name": "Acme",
        "currency": "EUR",
    }


async def test_a_shop_with_a_null_currency_gets_euros(database):
    await database.shops.insert_one({"_id": SHOP, "currency": None})
    docs = await inserted(database, [contact_doc(1)])

    await seed_orders(database, SHOP, docs, 2, random.Random(1))

    assert {o["currency"] for o in await database.orders.find({}).to_list()} == {"EUR"}
    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "EUR"


async def test_an_unknown_shop_seeds_in_euros_and_is_not_created(database):
    docs = await inserted(database, [contact_doc(1)])

    await seed_orders(database, SHOP, docs, 2, random.Random(1))

    assert {o["currency"] for o in await database.orders.find({}).to_list()} == {"EUR"}
    assert await database.shops.count_documents({}) == 0


# -- the contacts ----------------------------------------------------------------------


def expected_statistics(orders: list[dict]) -> dict:
    """Recording `orders` one by one, oldest first: what the contact's statistics become."""
    count, spent, first, last = 0, Decimal(0), None, None
    ship_at = None
    for order in orders:
        if order["status"] in ("OPEN", "FULFILLED"):
            count += 1
            spent += order["total"].to_decimal()
            first = order["placedAt"] if first is None else min(first, order["placedAt"])
            last = order["placedAt"] if last is None else max(last, order["placedAt"])
        if order["shippingAddress"]:
            ship_at = order["placedAt"]
    stats = {
        "kind": "CUSTOMER",
        "orderCount": count,
        "totalSpent": Decimal128(spent),
        "orderRev": len(orders),
        "shipAt": ship_at,
    }
    if count:
        stats["firstOrderAt"], stats["lastOrderAt"] = first, last
    return stats


def statistics(contact: dict) -> dict:
    names = ("kind", "orderCount", "totalSpent", "orderRev", "shipAt", "firstOrderAt")
    found = {name: contact[name] for name in (*names, "lastOrderAt") if name in contact}
    return found


def expected_log(orders: list[dict]) -> list[tuple]:
    placed = [
        ("ORDER_PLACED", o["placedAt"], o["_id"], f"Order {o['number']}: {o['total']} EUR")
        for o in orders
    ]
    canceled = [
        ("ORDER_CANCELED", NOW, o["_id"], f"Order {o['number']}: {o['total']} EUR")
        for o in orders
        if o["status"] == "CANCELED"
    ]
    return placed + canceled


async def test_each_contacts_statistics_are_those_of_its_orders_recorded_one_by_one(database):
    docs = await inserted(database, [contact_doc(n) for n in range(8)])

    await seed_orders(database, SHOP, docs, 6, random.Random(9))

    saw_canceled = False
    for doc in docs:
        orders = await orders_of(database, doc["_id"])
        saw_canceled |= any(o["status"] == "CANCELED" for o in orders)
        contact = await stored_contact(database, doc["_id"])
        assert statistics(contact) == expected_statistics(orders)
    assert saw_canceled  # the rule for canceled orders was exercised


async def test_canceled_orders_are_logged_but_not_counted(database):
    # Seed 0 gives this contact canceled orders among counted ones (asserted below).
    docs = await inserted(database, [contact_doc(n) for n in range(12)])

    await seed_orders(database, SHOP, docs, 5, random.Random(0))

    mixed = []
    for doc in docs:
        orders = await orders_of(database, doc["_id"])
        if {o["status"] for o in orders} >= {"CANCELED"} and len({o["status"] for o in orders}) > 1:
            mixed.append((doc, orders))
    assert mixed
    for doc, orders in mixed:
        contact = await stored_contact(database, doc["_id"])
        counting = [o for o in orders if o["status"] != "CANCELED"]
        assert contact["orderCount"] == len(counting) < len(orders)
        assert contact["totalSpent"] == Decimal128(
            sum((o["total"].to_decimal() for o in counting), Decimal(0))
        )
        assert contact["firstOrderAt"] == counting[0]["placedAt"]
        assert contact["lastOrderAt"] == counting[-1]["placedAt"]
        assert contact["orderRev"] == len(orders)


async def test_a_contact_whose_only_orders_are_canceled_has_no_order_times(database):
    docs = await inserted(database, [contact_doc(n) for n in range(80)])

    await seed_orders(database, SHOP, docs, 1, random.Random(4))

    canceled = await database.orders.find({"status": "CANCELED"}).to_list()
    assert canceled
    contacts = await database.contacts.find(
        {"_id": {"$in": [o["contactId"] for o in canceled]}}
    ).to_list()
    assert len(contacts) == len(canceled)
    for contact in contacts:
        assert contact["kind"] == "CUSTOMER"
        assert contact["orderCount"] == 0
        assert contact["totalSpent"] == Decimal128("0")
        assert contact["orderRev"] == 1
        assert "firstOrderAt" not in contact
        assert "lastOrderAt" not in contact


async def test_a_contact_without_shipped_orders_keeps_no_ship_time(database):
    docs = await inserted(database, [contact_doc(n) for n in range(40)])

    await seed_orders(database, SHOP, docs, 1, random.Random(6))

    unshipped = 0
    orders = {o["contactId"]: o for o in await database.orders.find({}).to_list()}
    for contact in await database.contacts.find({}).to_list():
        order = orders[contact["_id"]]
        if order["shippingAddress"] is None:
            unshipped += 1
            assert contact["shipAt"] is None
        else:
            assert contact["shipAt"] == order["placedAt"]
    assert 0 < unshipped < 40


async def test_each_order_is_logged_after_the_contacts_earlier_entries(database):
    docs = await inserted(database, [contact_doc(n) for n in range(8)])

    await seed_orders(database, SHOP, docs, 5, random.Random(9))

    for doc in docs:
        orders = await orders_of(database, doc["_id"])
        contact = await stored_contact(database, doc["_id"])
        log = contact["activity"]
        assert log[0] == doc["activity"][0]
        new = [(e["kind"], e["at"], e["orderId"], e["text"]) for e in log[1:]]
        assert new == sorted(expected_log(orders), key=lambda e: e[1])
        assert [(e["at"], e["_id"]) for e in log[1:]] == sorted(
            (e["at"], e["_id"]) for e in log[1:]
        )
        assert contact["activityCount"] == contact["activityEmbedded"] == len(log)


async def test_other_contacts_and_other_shops_are_left_alone(database):
    docs = await inserted(database, [contact_doc(n) for n in range(2)])
    bystander = contact_doc(9, kind="LEAD")
    elsewhere = contact_doc(8, kind="LEAD", shop=OTHER)
    await inserted(database, [bystander, elsewhere])

    await seed_orders(database, SHOP, docs, 3, random.Random(1))

    assert await stored_contact(database, bystander["_id"]) == bystander
    assert await stored_contact(database, elsewhere["_id"]) == elsewhere
    assert await counter_parts(database, OTHER) == []


async def test_a_contact_of_another_shop_passed_in_is_not_changed(database):
    # The update is scoped to the shop: a foreign contact is never touched.
    [foreign] = await inserted(database, [contact_doc(1, shop=OTHER)])

    await seed_orders(database, SHOP, [foreign], 2, random.Random(1))

    assert await stored_contact(database, foreign["_id"]) == foreign


# -- the counters ----------------------------------------------------------------------


async def test_leads_become_customers_in_the_shops_counters(database):
    docs = await inserted(
        database, [contact_doc(1, "LEAD"), contact_doc(2, "CUSTOMER"), contact_doc(3, "LEAD")]
    )

    await seed_orders(database, SHOP, docs, 2, random.Random(1))

    assert await counter_parts(database) == [{"total": 0, "LEAD": -2, "CUSTOMER": 2}]
    for doc in docs:
        assert (await stored_contact(database, doc["_id"]))["kind"] == "CUSTOMER"


async def test_customers_only_leave_the_counters_unchanged(database):
    docs = await inserted(database, [contact_doc(1, "CUSTOMER"), contact_doc(2, "CUSTOMER")])

    await seed_orders(database, SHOP, docs, 2, random.Random(1))

    assert await counter_parts(database) == []


async def test_a_contact_stored_without_a_kind_is_counted_as_a_new_customer(database):
    docs = await inserted(database, [contact_doc(1, None), contact_doc(2, "LEAD")])

    await seed_orders(database, SHOP, docs, 1, random.Random(1))

    assert await counter_parts(database) == [{"total": 1, "LEAD": -1, "CUSTOMER": 2}]
    assert (await stored_contact(database, docs[0]["_id"]))["kind"] == "CUSTOMER"


async def test_a_failing_counter_change_leaves_nothing_stored(database):
    # Everything is one transaction: an unknown kind refused by the counters undoes the orders.
    docs = await inserted(database, [contact_doc(1, "LEAD"), contact_doc(2, "VISITOR")])

    with pytest.raises(ValueError, match="unknown contact kind VISITOR"):
        await seed_orders(database, SHOP, docs, 2, random.Random(1))

    assert await database.orders.count_documents({}) == 0
    for doc in docs:
        assert await stored_contact(database, doc["_id"]) == doc
    assert await counter_parts(database) == []


# -- nothing to do ---------------------------------------------------------------------


@pytest.mark.parametrize("per_contact", [0, -1])
async def test_no_orders_per_contact_writes_nothing(database, per_contact):
    await database.shops.insert_one({"_id": SHOP, "name": "Acme"})
    docs = await inserted(database, [contact_doc(1)])

    assert await seed_orders(database, SHOP, docs, per_contact, random.Random(1)) == 0

    assert await database.orders.count_documents({}) == 0
    assert await stored_contact(database, docs[0]["_id"]) == docs[0]
    assert await counter_parts(database) == []
    assert await database.shops.find_one({"_id": SHOP}) == {"_id": SHOP, "name": "Acme"}


async def test_no_contacts_writes_nothing(database):
    await database.shops.insert_one({"_id": SHOP, "name": "Acme"})

    assert await seed_orders(database, SHOP, [], 3, random.Random(1)) == 0

    assert await database.orders.count_documents({}) == 0
    assert await counter_parts(database) == []
    assert await database.shops.find_one({"_id": SHOP}) == {"_id": SHOP, "name": "Acme"}


async def test_a_failure_after_the_counters_moved_leaves_them_unmoved(database, monkeypatch):
    # The counter change is written in the transaction: when the seeding fails at its end, it goes too.
    real = order_seed.count_contacts

    async def count_then_fail(*args: Any, **kwargs: Any) -> None:
        await real(*args, **kwargs)
        raise RuntimeError("lost at commit")

    monkeypatch.setattr(order_seed, "count_contacts", count_then_fail)
    docs = await inserted(database, [contact_doc(1, "LEAD")])

    with pytest.raises(RuntimeError, match="lost at commit"):
        await seed_orders(database, SHOP, docs, 2, random.Random(1))

    assert await counter_parts(database) == []
    assert await database.orders.count_documents({}) == 0
    assert await stored_contact(database, docs[0]["_id"]) == docs[0]
