"""POST /webhooks/subscriptions: signed and replay-safe exactly as the order webhook.

Deliveries are signed with the `standardwebhooks` package's own sender code.
"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
from conftest import SHOP
from standardwebhooks import Webhook

from resolvers.shops import new_webhook_secret, webhook_secret
from resolvers.webhook_receipts import APPLIED

URL = f"/webhooks/subscriptions?shop={SHOP}"


def body_of(external_id: str = "SUB-W", **extra: object) -> bytes:
    return orjson.dumps(
        {
            "externalId": external_id,
            "email": "Wen@Example.com",
            "status": "ACTIVE",
            "kind": "MEMBERSHIP",
            "title": "Members' area",
            "price": "5.00",
            "currencyCode": "EUR",
            "interval": "MONTH",
            "startedAt": "2026-01-01T00:00:00Z",
            **extra,
        }
    )


def signed(secret: str, body: bytes, webhook_id: str | None = None) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = dt.datetime.now(dt.UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body.decode()),
    }


async def secret_of(database) -> str:  # type: ignore[no-untyped-def]
    secret = await webhook_secret(database, SHOP)
    assert secret is not None
    return secret


async def contact_doc(database) -> dict | None:  # type: ignore[no-untyped-def]
    return await database.contacts.find_one({"shopId": SHOP, "emailKey": "wen@example.com"})


async def test_a_signed_contract_is_recorded_like_the_mutation(http, database, keys):
    body = body_of()
    response = await http.post(URL, content=body, headers=signed(await secret_of(database), body))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["userErrors"] == []
    assert answer["subscriptionContract"]["externalId"] == "SUB-W"
    assert answer["subscriptionContract"]["status"] == "ACTIVE"
    assert answer["subscriptionContract"]["contact"]["id"]
    contact = await contact_doc(database)
    assert contact["kind"] == "CUSTOMER" and contact["isMember"] is True
    assert [e["kind"] for e in contact["activity"]] == ["SUBSCRIPTION_STARTED"]
    receipt = await database.webhook_receipts.find_one({"shopId": SHOP})
    assert receipt["state"] == APPLIED


async def test_a_replayed_delivery_is_applied_once(http, database, keys):
    secret = await secret_of(database)
    early = body_of(updatedAt="2026-01-01T00:00:00Z")
    early_headers = signed(secret, early, webhook_id="msg_early")
    assert (await http.post(URL, content=early, headers=early_headers)).status_code == 200
    paused = body_of(status="PAUSED", updatedAt="2026-01-02T00:00:00Z")
    assert (await http.post(URL, content=paused, headers=signed(secret, paused))).status_code == 200

    # The captured first delivery again, and a sender's retry of it under the same id.
    for headers in (early_headers, signed(secret, early, webhook_id="msg_early")):
        again = await http.post(URL, content=early, headers=headers)
        assert again.status_code == 200
        assert again.json() == {"webhookId": "msg_early", "alreadyApplied": True}
    # The same old report under a new id is older than what is applied: nothing changes.
    stale = await http.post(URL, content=early, headers=signed(secret, early))
    assert stale.status_code == 200 and stale.json()["subscriptionContract"]["status"] == "PAUSED"

    contract = await database.subscription_contracts.find_one({"shopId": SHOP})
    assert contract["status"] == "PAUSED"
    contact = await contact_doc(database)
    assert [e["kind"] for e in contact["activity"]] == [
        "SUBSCRIPTION_STARTED",
        "SUBSCRIPTION_CHANGED",
    ]


async def test_a_bad_signature_or_stale_timestamp_is_401_and_writes_nothing(http, database, keys):
    body = body_of()
    secret = await secret_of(database)
    good = signed(secret, body)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    stale = {
        **good,
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": Webhook(secret).sign(good["webhook-id"], old, body.decode()),
    }
    for headers in (
        signed(new_webhook_secret(), body),
        {**good, "webhook-signature": "v1,AAAA"},
        {k: v for k, v in good.items() if k != "webhook-id"},
        stale,
    ):
        response = await http.post(URL, content=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # Signed for the order webhook's shop but posted for another shop: unknown there.
    response = await http.post(
        "/webhooks/subscriptions?shop=nope", content=body, headers=signed(secret, body)
    )
    assert response.status_code == 401
    assert await database.subscription_contracts.count_documents({}) == 0
    assert await database.contacts.count_documents({}) == 0
    assert await database.webhook_receipts.count_documents({}) == 0


async def test_refused_input_is_422_and_frees_the_id_for_the_retry(http, database, keys):
    secret = await secret_of(database)
    bad = body_of(price="0")
    response = await http.post(URL, content=bad, headers=signed(secret, bad, "msg_fix"))
    assert response.status_code == 422
    assert response.json()["userErrors"] == [
        {
            "field": ["input", "price"],
            "message": "Price must be greater than zero.",
            "code": "INVALID",
        }
    ]
    assert await database.webhook_receipts.count_documents({}) == 0

    not_an_input = orjson.dumps({"externalId": "x"})
    response = await http.post(URL, content=not_an_input, headers=signed(secret, not_an_input))
    assert response.status_code == 400
    listed = orjson.dumps([1])
    response = await http.post(URL, content=listed, headers=signed(secret, listed))
    assert response.status_code == 400
    assert "SubscriptionContractInput" in response.json()["errors"][0]["message"]

    fixed = body_of()
    response = await http.post(URL, content=fixed, headers=signed(secret, fixed, "msg_fix"))
    assert response.status_code == 200
    assert await database.subscription_contracts.count_documents({}) == 1


async def test_an_order_body_is_not_a_contract(http, database, keys):
    secret = await secret_of(database)
    order = orjson.dumps(
        {
            "externalId": "O-1",
            "email": "wen@example.com",
            "currencyCode": "EUR",
            "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "3"}],
        }
    )
    response = await http.post(URL, content=order, headers=signed(secret, order))
    assert response.status_code == 400
    assert await database.orders.count_documents({}) == 0
    assert await database.subscription_contracts.count_documents({}) == 0
