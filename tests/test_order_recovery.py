"""An order stored but never counted (the process died between its two writes) is counted later, once."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest
from bson import ObjectId
from conftest import SHOP
from test_orders import CANCEL, RECORD, kinds, order_input
from test_webhooks import signed

from graph.types.node import encode_id
from resolvers import orders as order_rules
from resolvers.shops import webhook_secret

STATS = "orderCount totalSpent { amount } kind"


@pytest.fixture
def crashing_landing(monkeypatch):
    """The next recording stores its order and dies before the contact write."""

    real = order_rules._land_order

    async def crash(*args, **kwargs):
        monkeypatch.setattr(order_rules, "_land_order", real)
        raise RuntimeError("the process died here")

    monkeypatch.setattr(order_rules, "_land_order", crash)


async def lost_order(api, database, external_id: str, email: str, age_seconds: int = 120) -> dict:
    body = await api.gql(RECORD, {"input": order_input(external_id, email)})
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    order = await database.orders.find_one({"externalId": external_id})
    created = order["createdAt"] - dt.timedelta(seconds=age_seconds)
    await database.orders.update_one({"_id": order["_id"]}, {"$set": {"createdAt": created}})
    return order


async def contact_of(database, email: str) -> dict | None:
    return await database.contacts.find_one({"emailKey": email})


async def test_a_resent_report_counts_an_order_of_a_new_customer(api, database, crashing_landing):
    await lost_order(api, database, "L-1", "lost@example.com")
    assert await contact_of(database, "lost@example.com") is None

    replay = (await api.data(RECORD, {"input": order_input("L-1", "lost@example.com")}))[
        "orderRecord"
    ]
    assert replay["userErrors"] == []
    assert replay["contact"]["orderCount"] == 1 and replay["contact"]["kind"] == "CUSTOMER"
    assert replay["order"]["contact"]["email"] == "lost@example.com"
    again = (await api.data(RECORD, {"input": order_input("L-1", "lost@example.com")}))[
        "orderRecord"
    ]
    assert again["contact"]["orderCount"] == 1
    doc = await contact_of(database, "lost@example.com")
    assert doc["orderCount"] == 1 and kinds(doc) == ["ORDER_PLACED"]


async def test_a_resent_report_counts_an_order_of_a_known_lead(api, database, crashing_landing):
    await api.data(
        'mutation { contactCreate(input: {email: "lead@example.com"}) { contact { id } } }'
    )
    await lost_order(api, database, "L-2", "lead@example.com")
    lead = await contact_of(database, "lead@example.com")
    assert lead["kind"] == "LEAD" and lead.get("orderCount", 0) == 0

    before = dt.datetime.now(dt.UTC)
    replays = await asyncio.gather(
        *(api.data(RECORD, {"input": order_input("L-2", "lead@example.com")}) for _ in range(8))
    )
    assert all(r["orderRecord"]["userErrors"] == [] for r in replays)
    doc = await contact_of(database, "lead@example.com")
    assert doc["kind"] == "CUSTOMER" and doc["orderCount"] == 1
    assert (
        str(doc["totalSpent"].to_decimal()) == replays[0]["orderRecord"]["order"]["total"]["amount"]
    )
    assert sorted(kinds(doc)) == ["CONTACT_CREATED", "CONVERTED_TO_CUSTOMER", "ORDER_PLACED"]
    assert doc["updatedAt"] >= before - dt.timedelta(seconds=1)  # changed now, not back then


async def test_a_recording_that_may_still_be_under_way_is_not_counted_twice(
    api, database, crashing_landing, monkeypatch
):
    # Within a minute the first recording may still be writing: a resend or a
    # cancel then waits briefly for it and, if it does not finish, asks to
    # come back later. Nothing is counted or taken off meanwhile.
    monkeypatch.setattr(order_rules, "LANDING_WAIT_SECONDS", 0.2)
    order = await lost_order(api, database, "L-3", "young@example.com", age_seconds=0)
    for body in (
        await api.gql(RECORD, {"input": order_input("L-3", "young@example.com")}),
        await api.gql(
            RECORD, {"input": order_input("L-3", "young@example.com", status="CANCELED")}
        ),
        await api.gql(CANCEL, {"id": encode_id("Order", order["_id"])}),
    ):
        assert body["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    assert await contact_of(database, "young@example.com") is None
    assert (await database.orders.find_one({"_id": order["_id"]}))["status"] == "OPEN"


async def test_the_webhook_asks_to_resend_a_delivery_still_being_recorded(
    http, database, keys, crashing_landing, monkeypatch
):
    monkeypatch.setattr(order_rules, "LANDING_WAIT_SECONDS", 0.2)
    secret = await webhook_secret(database, SHOP)
    assert secret is not None
    body = orjson.dumps(order_input("W-9", "hook@example.com"))
    url = f"/webhooks/orders?shop={SHOP}"
    # Every attempt is one delivery: the same webhook-id, retried until it succeeds.
    first = await http.post(url, content=body, headers=signed(secret, body, "msg_w9"))
    assert first.status_code == 500  # the recording died half-way
    again = await http.post(url, content=body, headers=signed(secret, body, "msg_w9"))
    assert again.status_code == 503 and again.headers["Retry-After"] == "60"
    assert again.json()["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    # A minute later the shop sends it once more, and it counts.
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    await database.orders.update_one({"externalId": "W-9"}, {"$set": {"createdAt": old}})
    last = await http.post(url, content=body, headers=signed(secret, body, "msg_w9"))
    assert last.status_code == 200 and last.json()["order"]["externalId"] == "W-9"
    assert (await contact_of(database, "hook@example.com"))["orderCount"] == 1
    receipt = await database.webhook_receipts.find_one({"webhookId": "msg_w9"})
    assert receipt["state"] == "APPLIED"


async def test_cancelling_an_order_never_counted_counts_nothing_twice(
    api, database, crashing_landing
):
    order = await lost_order(api, database, "L-4", "cancel@example.com")
    canceled = (await api.data(CANCEL, {"id": encode_id("Order", order["_id"])}))["orderCancel"]
    assert canceled["userErrors"] == [] and canceled["order"]["status"] == "CANCELED"
    assert canceled["contact"]["orderCount"] == 0
    assert canceled["contact"]["totalSpent"]["amount"] == "0.00"
    doc = await contact_of(database, "cancel@example.com")
    assert sorted(kinds(doc)) == ["ORDER_CANCELED", "ORDER_PLACED"]


MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) { contact { orderCount } userErrors { code } }
}
"""


async def test_an_order_counted_by_a_merge_is_not_counted_again(api, database, crashing_landing):
    created = await api.data(
        'mutation { a: contactCreate(input: {email: "keep@example.com"}) { contact { id } } '
        'b: contactCreate(input: {email: "dup@example.com"}) { contact { id } } }'
    )
    await lost_order(api, database, "L-5", "dup@example.com")
    merged = (
        await api.data(
            MERGE,
            {"target": created["a"]["contact"]["id"], "sources": [created["b"]["contact"]["id"]]},
        )
    )["contactsMerge"]
    assert merged == {"contact": {"orderCount": 1}, "userErrors": []}  # summed from the orders
    await api.data(RECORD, {"input": order_input("L-5", "dup@example.com")})
    assert (await contact_of(database, "keep@example.com"))["orderCount"] == 1


async def test_an_order_landed_but_not_relinked_is_only_relinked(api, database):
    recorded = (await api.data(RECORD, {"input": order_input("L-6", "linked@example.com")}))[
        "orderRecord"
    ]
    assert recorded["contact"]["orderCount"] == 1
    # As if it had landed on the contact its email found and died before relinking.
    order = await database.orders.find_one({"externalId": "L-6"})
    old = order["createdAt"] - dt.timedelta(minutes=5)
    await database.orders.update_one(
        {"_id": order["_id"]}, {"$set": {"contactId": ObjectId(), "createdAt": old}}
    )
    await api.data(RECORD, {"input": order_input("L-6", "linked@example.com")})
    contact = await contact_of(database, "linked@example.com")
    assert contact["orderCount"] == 1
    assert (await database.orders.find_one({"_id": order["_id"]}))["contactId"] == contact["_id"]


async def test_a_resend_and_a_cancel_racing_count_the_order_once(api, database, crashing_landing):
    order = await lost_order(api, database, "L-7", "race@example.com")
    resent, canceled = await asyncio.gather(
        api.data(RECORD, {"input": order_input("L-7", "race@example.com")}),
        api.data(CANCEL, {"id": encode_id("Order", order["_id"])}),
    )
    assert resent["orderRecord"]["userErrors"] == canceled["orderCancel"]["userErrors"] == []
    doc = await contact_of(database, "race@example.com")
    assert doc["orderCount"] == 0 and str(doc["totalSpent"].to_decimal()) in ("0", "0.00")
    assert sorted(kinds(doc)) == ["ORDER_CANCELED", "ORDER_PLACED"]
    assert (await database.orders.find_one({"_id": order["_id"]}))["status"] == "CANCELED"
