"""The shop's side of a failed recording: resend at once, and the order counts exactly once.

A recording either happened whole or not at all (tests/test_order_transaction.py),
so nothing waits for an earlier attempt: a resend right after a failure
applies, a replay of an applied order changes nothing, and a cancel, a
resend or a merge running at the same moment never counts an order twice.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from conftest import SHOP
from test_order_transaction import assert_whole, fault_hook
from test_orders import CANCEL, RECORD, contact_doc, kinds, order_input
from test_webhooks import signed

from resolvers.shops import webhook_secret

URL = f"/webhooks/orders?shop={SHOP}"


@pytest.fixture
def stop_at(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    return fault_hook(monkeypatch)


async def test_a_delivery_that_failed_is_applied_when_the_sender_retries_it(
    http, database, keys, stop_at
):
    secret = await webhook_secret(database, SHOP)
    assert secret is not None
    body = orjson.dumps(order_input("W-9", "hook@example.com"))
    stop_at("insert_one", "contacts")

    first = await http.post(URL, content=body, headers=signed(secret, body, "msg_w9"))

    assert first.status_code == 500
    assert await database.orders.count_documents({}) == 0
    assert await database.webhook_receipts.count_documents({}) == 0  # the id is free again
    # The sender retries the same delivery at once: no waiting for the failed attempt.
    again = await http.post(URL, content=body, headers=signed(secret, body, "msg_w9"))
    assert again.status_code == 200 and again.json()["order"]["externalId"] == "W-9"
    assert (await contact_doc(database, "hook@example.com"))["orderCount"] == 1
    receipt = await database.webhook_receipts.find_one({"webhookId": "msg_w9"})
    assert receipt["state"] == "APPLIED"
    # Under a new webhook-id (the shop's next report of it) it is a replay: still one.
    later = await http.post(URL, content=body, headers=signed(secret, body, "msg_w9b"))
    assert later.status_code == 200
    assert (await contact_doc(database, "hook@example.com"))["orderCount"] == 1
    await assert_whole(database)


async def test_a_failed_report_of_a_known_order_is_simply_sent_again(api, database, stop_at):
    await api.data(RECORD, {"input": order_input("R-1", refunded="0")})
    stop_at("update_one", "orders")

    body = await api.gql(RECORD, {"input": order_input("R-1", refunded="5")})
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"

    resent = (await api.data(RECORD, {"input": order_input("R-1", refunded="5")}))["orderRecord"]
    assert resent["order"]["refunded"]["amount"] == "5"
    assert (
        resent["contact"]["orderCount"] == 1
        and resent["contact"]["totalSpent"]["amount"] == "29.90"
    )


async def test_resends_and_a_cancel_at_once_cancel_the_order_once(api, database):
    recorded = await api.data(RECORD, {"input": order_input("R-2")})
    order_id = recorded["orderRecord"]["order"]["id"]

    results = await asyncio.gather(
        *(api.data(RECORD, {"input": order_input("R-2")}) for _ in range(4)),
        api.data(CANCEL, {"id": order_id}),
        api.data(RECORD, {"input": order_input("R-2", status="CANCELED")}),
    )

    assert all(not r[next(iter(r))]["userErrors"] for r in results)
    contact = await contact_doc(database)
    assert contact["orderCount"] == 0 and contact["totalSpent"].to_decimal() == 0
    assert sorted(kinds(contact)) == ["ORDER_CANCELED", "ORDER_PLACED"]
    await assert_whole(database)


MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) { contact { orderCount } userErrors { code } }
}
"""


async def test_orders_arriving_while_their_contacts_are_merged_count_once(api, database):
    created = await api.data(
        'mutation { a: contactCreate(input: {email: "keep@example.com"}) { contact { id } } '
        'b: contactCreate(input: {email: "dup@example.com"}) { contact { id } } }'
    )
    keep, dup = created["a"]["contact"]["id"], created["b"]["contact"]["id"]
    orders = [
        order_input(f"M-{i}", "dup@example.com" if i % 2 else "keep@example.com") for i in range(10)
    ]

    results = await asyncio.gather(
        *(api.data(RECORD, {"input": o}) for o in orders),
        api.data(MERGE, {"target": keep, "sources": [dup]}),
    )

    assert results[-1]["contactsMerge"]["userErrors"] == []
    # Orders for the merged-away address that came after the merge made a new contact.
    contacts = await database.contacts.find({"shopId": SHOP}).to_list()
    assert sum(c["orderCount"] for c in contacts) == 10
    assert sum(kinds(c).count("ORDER_PLACED") for c in contacts) == 10
    await assert_whole(database)
