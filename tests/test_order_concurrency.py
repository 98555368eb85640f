"""Orders recorded at the same time: one contact, one order per externalId, exact statistics."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

from bson import Decimal128
from conftest import SHOP, Api

RECORD = """
mutation($input: OrderInput!) {
  orderRecord(input: $input) {
    order { id externalId status }
    userErrors { field code }
  }
}
"""

CANCEL = "mutation($id: ID!) { orderCancel(id: $id) { order { status } userErrors { code } } }"

BASE_TIME = dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC)


def placed(minutes: int) -> str:
    return (BASE_TIME + dt.timedelta(minutes=minutes)).isoformat(timespec="milliseconds")


def order(external_id: str, email: str, price: str, minutes: int, **extra: object) -> dict:
    return {
        "externalId": external_id,
        "email": email,
        "currencyCode": "EUR",
        "placedAt": placed(minutes),
        "lineItems": [{"title": "Item", "quantity": 1, "unitPrice": price}],
        **extra,
    }


async def record_all(api: Api, inputs: list[dict]) -> list[dict]:
    results = await asyncio.gather(*[api.data(RECORD, {"input": i}) for i in inputs])
    return [r["orderRecord"] for r in results]


async def test_fifty_orders_for_one_new_email_make_one_contact_with_exact_statistics(api, database):
    # Prices with cents that floats cannot hold; the email in several spellings.
    spellings = ["ann@example.com", "Ann@Example.com", "ANN@EXAMPLE.COM"]
    inputs = [
        order(
            f"C-{i}",
            spellings[i % 3],
            f"{i}.{(i * 7) % 100:02d}",
            minutes=i,
            firstName="Ann",
            lastName="Example",
        )
        for i in range(50)
    ]
    expected = sum(Decimal(i["lineItems"][0]["unitPrice"]) for i in inputs)
    results = await record_all(api, inputs)
    assert all(r["userErrors"] == [] for r in results)

    contacts = await database.contacts.find({"shopId": SHOP}).to_list()
    assert len(contacts) == 1
    contact = contacts[0]
    assert contact["kind"] == "CUSTOMER"
    assert contact["orderCount"] == 50
    assert contact["totalSpent"] == Decimal128(expected)
    assert contact["firstOrderAt"] == BASE_TIME and contact[
        "lastOrderAt"
    ] == BASE_TIME + dt.timedelta(minutes=49)
    placed_entries = [e for e in contact["activity"] if e["kind"] == "ORDER_PLACED"]
    assert len(placed_entries) == contact["activityCount"] == 50
    orders = await database.orders.find({"shopId": SHOP}).to_list()
    assert len(orders) == 50
    # Every order points at the one contact, however its insert raced.
    assert {o["contactId"] for o in orders} == {contact["_id"]}
    assert {e["orderId"] for e in placed_entries} == {o["_id"] for o in orders}
    assert contact["nameKey"] == "ann example"

    query = (
        "query($id: ID!) { contact(id: $id) { orderCount totalSpent { amount } "
        "orders(first: 250) { totalCount } } }"
    )
    contact_gid = (await api.data("{ contacts(first: 2) { nodes { id } } }"))["contacts"]["nodes"][
        0
    ]["id"]
    data = (await api.data(query, {"id": contact_gid}))["contact"]
    assert data["orderCount"] == 50 and Decimal(data["totalSpent"]["amount"]) == expected
    assert data["orders"]["totalCount"] == 50


async def test_the_same_external_id_ten_times_at_once_is_one_order(api, database):
    results = await record_all(api, [order("SAME-1", "bob@example.com", "19.99", 0)] * 10)
    assert all(r["userErrors"] == [] for r in results)
    assert len({r["order"]["id"] for r in results}) == 1
    assert await database.orders.count_documents({"shopId": SHOP}) == 1
    contacts = await database.contacts.find({"shopId": SHOP}).to_list()
    assert len(contacts) == 1
    assert contacts[0]["orderCount"] == 1
    assert contacts[0]["totalSpent"] == Decimal128("19.99")
    assert [e["kind"] for e in contacts[0]["activity"]] == ["ORDER_PLACED"]
    assert (await database.orders.find_one({"shopId": SHOP}))["contactId"] == contacts[0]["_id"]


async def test_concurrent_orders_convert_a_lead_once(api, database):
    await api.data(
        'mutation { contactCreate(input: {email: "lead@example.com"}) { contact { id } } }'
    )
    results = await record_all(
        api, [order(f"L-{i}", "lead@example.com", "5.00", i) for i in range(12)]
    )
    assert all(r["userErrors"] == [] for r in results)
    contact = await database.contacts.find_one({"shopId": SHOP, "emailKey": "lead@example.com"})
    kinds = [e["kind"] for e in contact["activity"]]
    assert contact["kind"] == "CUSTOMER"
    assert kinds.count("CONVERTED_TO_CUSTOMER") == 1
    assert kinds.count("ORDER_PLACED") == 12
    assert contact["orderCount"] == 12 and contact["totalSpent"] == Decimal128("60.00")


async def test_cancels_racing_new_orders_keep_statistics_exact(api, database):
    first = await record_all(
        api, [order(f"A-{i}", "cat@example.com", f"1{i}.01", minutes=10 * i) for i in range(10)]
    )
    ids = [r["order"]["id"] for r in first]
    # Cancel the oldest and the newest five while ten more orders (in between and later) arrive.
    cancels = [api.data(CANCEL, {"id": ids[i]}) for i in (0, 1, 2, 7, 8, 9)]
    more = [
        api.data(RECORD, {"input": order(f"B-{i}", "cat@example.com", "2.50", minutes=5 + 10 * i)})
        for i in range(10)
    ]
    # Replays with the canceled status for two of them at the same time: still one cancel each.
    replays = [
        api.data(
            RECORD,
            {"input": order(f"A-{i}", "cat@example.com", f"1{i}.01", 10 * i, status="CANCELED")},
        )
        for i in (0, 9)
    ]
    await asyncio.gather(*cancels, *more, *replays)

    counted = await database.orders.find(
        {"shopId": SHOP, "status": {"$in": ["OPEN", "FULFILLED"]}}
    ).to_list()
    assert len(counted) == 14
    contact = await database.contacts.find_one({"shopId": SHOP, "emailKey": "cat@example.com"})
    assert contact["orderCount"] == 14
    assert contact["totalSpent"].to_decimal() == sum(
        (o["total"].to_decimal() for o in counted), Decimal(0)
    )
    assert contact["totalSpent"] == Decimal128("83.04")  # 13.01 + 14.01 + 15.01 + 16.01 + 10 x 2.50
    assert contact["firstOrderAt"] == min(o["placedAt"] for o in counted)
    assert contact["lastOrderAt"] == max(o["placedAt"] for o in counted)
    assert [e["kind"] for e in contact["activity"]].count("ORDER_CANCELED") == 6


async def test_the_newest_shipping_address_wins_whatever_the_arrival_order(api, database):
    inputs = [
        order(
            f"S-{i}",
            "dan@example.com",
            "1.00",
            minutes=(i * 37) % 20,  # a shuffled order of placement times
            shippingAddress={
                "line1": f"Street {(i * 37) % 20}",
                "city": "Berlin",
                "countryCode": "DE",
            },
        )
        for i in range(20)
    ]
    results = await record_all(api, inputs)
    assert all(r["userErrors"] == [] for r in results)
    contact = await database.contacts.find_one({"shopId": SHOP, "emailKey": "dan@example.com"})
    assert contact["shippingAddress"]["line1"] == "Street 19"
    assert contact["shipAt"] == BASE_TIME + dt.timedelta(minutes=19)
    assert contact["orderCount"] == 20


async def test_first_orders_in_two_currencies_at_once_leave_one_currency(api, database):
    inputs = [
        {
            **order(f"M-{i}", f"m{i}@example.com", "1.00", i),
            "currencyCode": "EUR" if i % 2 else "USD",
        }
        for i in range(10)
    ]
    results = await record_all(api, inputs)
    currency = (await database.shops.find_one({"_id": SHOP}))["currency"]
    assert currency in {"EUR", "USD"}
    for given, result in zip(inputs, results, strict=True):
        if given["currencyCode"] == currency:
            assert result["userErrors"] == []
        else:
            assert result["userErrors"] == [{"field": ["input", "currencyCode"], "code": "INVALID"}]
    assert (
        await database.orders.count_documents({"shopId": SHOP, "currency": {"$ne": currency}}) == 0
    )
    assert await database.orders.count_documents({"shopId": SHOP}) == 5
