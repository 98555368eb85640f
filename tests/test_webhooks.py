"""POST /webhooks/orders: signed with the shop's secret, or refused without writing anything."""

from __future__ import annotations

import orjson
from conftest import OTHER_SHOP, SHOP

from graph.http.webhooks import sign
from resolvers.shops import rotate_webhook_secret

URL = f"/webhooks/orders?shop={SHOP}"


def order_body(external_id: str = "W-1", **extra: object) -> bytes:
    return orjson.dumps(
        {
            "externalId": external_id,
            "email": "Web@Example.com",
            "currencyCode": "EUR",
            "placedAt": "2025-05-01T12:00:00.000Z",
            "lineItems": [{"title": "Poster", "quantity": 3, "unitPrice": "7.30"}],
            "shipping": "3.10",
            "firstName": "Wera",
            **extra,
        }
    )


async def secret_of(database, shop: str = SHOP) -> str:  # type: ignore[no-untyped-def]
    return (await database.shops.find_one({"_id": shop}))["webhookSecret"]


async def post(http, body: bytes, signature: str | None, url: str = URL):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Contactgraph-Signature"] = signature
    return await http.post(url, content=body, headers=headers)


async def nothing_written(database) -> bool:  # type: ignore[no-untyped-def]
    return (
        await database.orders.count_documents({}) == 0
        and await database.contacts.count_documents({}) == 0
        and (await database.shops.find_one({"_id": SHOP}))["currency"] is None
    )


async def test_a_signed_order_is_recorded_like_order_record(http, database, keys):
    body = order_body()
    response = await post(http, body, sign(await secret_of(database), body))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["userErrors"] == []
    assert answer["order"]["externalId"] == "W-1" and answer["order"]["status"] == "OPEN"
    assert answer["order"]["total"] == {"amount": "25.00", "currencyCode": "EUR"}
    assert (
        answer["contact"]["email"] == "Web@example.com" and answer["contact"]["kind"] == "CUSTOMER"
    )
    contact = await database.contacts.find_one({"shopId": SHOP, "emailKey": "web@example.com"})
    assert contact["orderCount"] == 1 and contact["firstName"] == "Wera"
    assert [e["kind"] for e in contact["activity"]] == ["ORDER_PLACED"]
    # Delivered again (webhooks are retried): 200, nothing doubles.
    again = await post(http, body, sign(await secret_of(database), body))
    assert again.status_code == 200 and again.json()["order"]["id"] == answer["order"]["id"]
    contact = await database.contacts.find_one({"shopId": SHOP, "emailKey": "web@example.com"})
    assert contact["orderCount"] == 1 and contact["activityCount"] == 1
    assert await database.orders.count_documents({}) == 1


async def test_a_status_change_arrives_by_webhook(http, database, keys):
    secret = await secret_of(database)
    first = order_body()
    assert (await post(http, first, sign(secret, first))).status_code == 200
    canceled = order_body(status="CANCELED")
    response = await post(http, canceled, sign(secret, canceled))
    assert response.status_code == 200 and response.json()["order"]["status"] == "CANCELED"
    contact = await database.contacts.find_one({"shopId": SHOP, "emailKey": "web@example.com"})
    assert contact["orderCount"] == 0 and contact["totalSpent"].to_decimal() == 0


async def test_a_wrong_signature_is_401_and_writes_nothing(http, database, keys):
    body = order_body()
    secret = await secret_of(database)
    for signature in (
        sign("not-the-secret", body),
        sign(secret, body)[:-1] + ("0" if sign(secret, body)[-1] != "0" else "1"),  # one digit off
        sign(secret, body).replace("sha256=", "sha1="),
        sign(secret, body).removeprefix("sha256="),  # the bare hex without the scheme
        "sha256=",
        "",
    ):
        response = await post(http, body, signature)
        assert response.status_code == 401, signature
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await nothing_written(database)


async def test_a_missing_signature_is_401(http, database, keys):
    response = await post(http, order_body(), None)
    assert response.status_code == 401
    assert await nothing_written(database)


async def test_a_tampered_body_is_401(http, database, keys):
    signed = order_body()
    signature = sign(await secret_of(database), signed)
    tampered = signed.replace(b'"7.30"', b'"0.01"')
    assert tampered != signed
    response = await post(http, tampered, signature)
    assert response.status_code == 401
    # Even whitespace counts: the signature covers the raw bytes.
    assert (await post(http, signed + b" ", signature)).status_code == 401
    assert await nothing_written(database)


async def test_the_shop_must_be_known_and_its_own_secret_used(http, database, keys):
    body = order_body()
    signature = sign(await secret_of(database), body)
    for url in (
        "/webhooks/orders",
        "/webhooks/orders?shop=no-such-shop",
        "/webhooks/orders?shop=BAD%20ID",
    ):
        assert (await post(http, body, signature, url)).status_code == 401, url
    # Signed with this shop's secret but sent to another shop.
    assert (
        await post(http, body, signature, f"/webhooks/orders?shop={OTHER_SHOP}")
    ).status_code == 401
    assert await database.orders.count_documents({}) == 0
    # The other shop's own secret records it there, not here.
    other = await post(
        http,
        body,
        sign(await secret_of(database, OTHER_SHOP), body),
        f"/webhooks/orders?shop={OTHER_SHOP}",
    )
    assert other.status_code == 200
    assert await database.orders.count_documents({"shopId": OTHER_SHOP}) == 1
    assert await database.orders.count_documents({"shopId": SHOP}) == 0


async def test_a_rotated_secret_replaces_the_old_one(http, database, keys):
    body = order_body()
    old = sign(await secret_of(database), body)
    new_secret = await rotate_webhook_secret(database, SHOP)
    assert (await post(http, body, old)).status_code == 401
    assert (await post(http, body, sign(new_secret, body))).status_code == 200


async def test_signed_but_unusable_bodies(http, database, keys):
    secret = await secret_of(database)
    for raw in (b"not json", b"[1, 2]", b'"an order"'):
        response = await post(http, raw, sign(secret, raw))
        assert response.status_code == 400, raw
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Valid JSON, but not an OrderInput: coercion errors name the problem.
    for raw in (
        orjson.dumps({"externalId": "X"}),
        order_body(lineItems=[{"title": "A", "quantity": "two", "unitPrice": "1"}]),
    ):
        response = await post(http, raw, sign(secret, raw))
        assert response.status_code == 400, raw
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Refused by the rules: 422 with the same userErrors orderRecord gives.
    raw = order_body(total="99.99")
    response = await post(http, raw, sign(secret, raw))
    assert response.status_code == 422
    assert response.json()["userErrors"] == [
        {
            "field": ["input", "total"],
            "message": response.json()["userErrors"][0]["message"],
            "code": "INVALID",
        }
    ]
    assert await nothing_written(database)


async def test_the_webhook_needs_no_api_key_and_accepts_only_post(http, database, keys):
    assert (await http.get(URL)).status_code == 405
    body = order_body()
    response = await http.post(
        URL,
        content=body,
        headers={
            "X-Contactgraph-Signature": sign(await secret_of(database), body),
            "Authorization": "Bearer wrong",
        },
    )
    assert response.status_code == 200
