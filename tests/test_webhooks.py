"""POST /webhooks/orders per Standard Webhooks: signed, fresh, applied once per webhook-id, in order.

Deliveries are signed with the `standardwebhooks` package's own sender code,
so a third-party signer is proven to be understood.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import OTHER_SHOP, SHOP
from real_server import CONTACTGRAPH, RunningServer, running_server
from standardwebhooks import Webhook

from graph.http import webhooks as webhook_endpoint
from resolvers import clock
from resolvers.shops import new_webhook_secret, rotate_webhook_secret, webhook_secret
from resolvers.webhook_receipts import APPLIED, APPLYING, KEEP_FOR

URL = f"/webhooks/orders?shop={SHOP}"
EMAIL_KEY = "web@example.com"


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


def signed(
    secret: str, body: bytes, webhook_id: str | None = None, at: dt.datetime | None = None
) -> dict[str, str]:
    """The headers a Standard Webhooks sender puts on a delivery, made by the reference library."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or dt.datetime.now(dt.UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body.decode()),
    }


async def secret_of(database, shop: str = SHOP) -> str:  # type: ignore[no-untyped-def]
    secret = await webhook_secret(database, shop)
    assert secret is not None and secret.startswith("whsec_")
    return secret


async def contact_doc(database) -> dict | None:  # type: ignore[no-untyped-def]
    return await database.contacts.find_one({"shopId": SHOP, "emailKey": EMAIL_KEY})


async def nothing_written(database) -> bool:  # type: ignore[no-untyped-def]
    return (
        await database.orders.count_documents({}) == 0
        and await database.contacts.count_documents({}) == 0
        and await database.webhook_receipts.count_documents({}) == 0
        and (await database.shops.find_one({"_id": SHOP}))["currency"] is None
    )


def hold_clock(monkeypatch, at: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    """The webhook's clock (tolerance and secret overlap) reads `at`."""
    monkeypatch.setattr(clock, "now", lambda: at)


def unauthenticated(response) -> bool:  # type: ignore[no-untyped-def]
    return (
        response.status_code == 401
        and response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    )


async def test_a_signed_order_is_recorded_like_order_record(http, database, keys):
    body = order_body()
    response = await http.post(URL, content=body, headers=signed(await secret_of(database), body))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["userErrors"] == []
    assert answer["order"]["externalId"] == "W-1" and answer["order"]["status"] == "OPEN"
    order = await database.orders.find_one({"shopId": SHOP, "externalId": "W-1"})
    assert order["total"].to_decimal() == 25 and order["currency"] == "EUR"
    contact = await contact_doc(database)
    assert answer["contact"]["id"] and contact["kind"] == "CUSTOMER"
    assert contact["email"] == "Web@example.com" and contact["firstName"] == "Wera"
    assert contact["orderCount"] == 1 and contact["totalSpent"].to_decimal() == 25
    assert [e["kind"] for e in contact["activity"]] == ["ORDER_PLACED"]
    receipt = await database.webhook_receipts.find_one({"shopId": SHOP})
    assert receipt["state"] == APPLIED


async def test_a_status_change_arrives_by_webhook(http, database, keys):
    secret = await secret_of(database)
    first = order_body()
    assert (await http.post(URL, content=first, headers=signed(secret, first))).status_code == 200
    canceled = order_body(status="CANCELED")
    response = await http.post(URL, content=canceled, headers=signed(secret, canceled))
    assert response.status_code == 200 and response.json()["order"]["status"] == "CANCELED"
    contact = await contact_doc(database)
    assert contact["orderCount"] == 0 and contact["totalSpent"].to_decimal() == 0


async def test_a_webhook_id_already_applied_answers_200_and_applies_nothing(http, database, keys):
    # The attack: an earlier delivery sent again after a later one.
    secret = await secret_of(database)
    early = order_body()
    early_headers = signed(secret, early, webhook_id="msg_early")
    assert (await http.post(URL, content=early, headers=early_headers)).status_code == 200
    later = order_body(status="FULFILLED", refunded="5")
    assert (await http.post(URL, content=later, headers=signed(secret, later))).status_code == 200
    before = await contact_doc(database)
    assert before["totalSpent"].to_decimal() == 25 and before["activityCount"] == 1

    # Captured and sent again byte for byte, and retried by a sender under the same id.
    for headers in (early_headers, signed(secret, early, webhook_id="msg_early")):
        again = await http.post(URL, content=early, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json() == {"webhookId": "msg_early", "alreadyApplied": True}

    order = await database.orders.find_one({"shopId": SHOP, "externalId": "W-1"})
    assert order["status"] == "FULFILLED" and order["refunded"].to_decimal() == 5
    after = await contact_doc(database)
    assert after["activityCount"] == before["activityCount"] == 1
    for stat in ("orderCount", "totalSpent", "firstOrderAt", "lastOrderAt", "orderRev"):
        assert after[stat] == before[stat], stat
    assert await database.webhook_receipts.count_documents({"shopId": SHOP}) == 2


async def test_the_same_webhook_id_in_another_shop_is_another_delivery(http, database, keys):
    body = order_body()
    for shop in (SHOP, OTHER_SHOP):
        headers = signed(await secret_of(database, shop), body, webhook_id="msg_shared")
        response = await http.post(f"/webhooks/orders?shop={shop}", content=body, headers=headers)
        assert response.status_code == 200 and "order" in response.json(), shop
    assert await database.orders.count_documents({}) == 2


async def test_a_wrong_secret_is_401_and_writes_nothing(http, database, keys):
    body = order_body()
    secret = await secret_of(database)
    other_shops = await secret_of(database, OTHER_SHOP)
    for key in (new_webhook_secret(), other_shops):
        assert unauthenticated(await http.post(URL, content=body, headers=signed(key, body)))
    # Right secret, but the signature mangled or in another scheme.
    good = signed(secret, body)
    digest = good["webhook-signature"].removeprefix("v1,")
    flipped = base64.b64encode(
        bytes([base64.b64decode(digest)[0] ^ 1]) + base64.b64decode(digest)[1:]
    )
    for signature in (
        f"v1,{flipped.decode()}",
        f"v2,{digest}",  # an unknown version is no signature
        digest,  # the bare base64 without the scheme
        "v1,",
        "v1,not base64!",
        "v1a,",
        " ",
        # The old scheme is gone.
        "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    ):
        response = await http.post(
            URL, content=body, headers={**good, "webhook-signature": signature}
        )
        assert unauthenticated(response), signature
    assert await nothing_written(database)


async def test_one_valid_signature_among_several_is_enough(http, database, keys):
    body = order_body()
    secret = await secret_of(database)
    headers = signed(secret, body)
    other = signed(new_webhook_secret(), body, headers["webhook-id"])["webhook-signature"]
    headers["webhook-signature"] = f"v2,abc {other} {headers['webhook-signature']}"
    assert (await http.post(URL, content=body, headers=headers)).status_code == 200


async def test_missing_or_malformed_headers_are_401(http, database, keys):
    body = order_body()
    good = signed(await secret_of(database), body)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = {k: v for k, v in good.items() if k != name}
        response = await http.post(URL, content=body, headers=headers)
        assert unauthenticated(response), name
        assert "webhook-id, webhook-timestamp and webhook-signature" in response.text
    for name, value in (
        ("webhook-timestamp", "soon"),
        ("webhook-timestamp", f"{good['webhook-timestamp']}.5"),
        ("webhook-timestamp", "-1"),
        ("webhook-id", "x" * 257),
        ("webhook-id", "has space"),
    ):
        response = await http.post(URL, content=body, headers={**good, name: value})
        assert unauthenticated(response), (name, value)
    assert await nothing_written(database)


async def test_a_tampered_body_id_or_timestamp_is_401(http, database, keys):
    body = order_body()
    headers = signed(await secret_of(database), body)
    tampered = body.replace(b'"7.30"', b'"0.01"')
    assert tampered != body
    assert unauthenticated(await http.post(URL, content=tampered, headers=headers))
    # Even whitespace counts: the signature covers the raw bytes.
    assert unauthenticated(await http.post(URL, content=body + b" ", headers=headers))
    # The id and the timestamp are signed too: neither can be swapped for another.
    renamed = {**headers, "webhook-id": headers["webhook-id"] + "x"}
    assert unauthenticated(await http.post(URL, content=body, headers=renamed))
    shifted = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}
    assert unauthenticated(await http.post(URL, content=body, headers=shifted))
    assert await nothing_written(database)


@pytest.mark.parametrize("offset", [dt.timedelta(minutes=-6), dt.timedelta(minutes=6)])
async def test_a_timestamp_more_than_5_minutes_off_is_401(
    http, database, keys, monkeypatch, offset
):
    now = clock.now()
    hold_clock(monkeypatch, now)
    body = order_body()
    response = await http.post(
        URL, content=body, headers=signed(await secret_of(database), body, at=now + offset)
    )
    assert unauthenticated(response)
    assert "more than 5 minutes" in response.text
    assert await nothing_written(database)


@pytest.mark.parametrize("offset", [dt.timedelta(minutes=-4), dt.timedelta(minutes=4)])
async def test_a_timestamp_within_5_minutes_is_accepted(http, database, keys, monkeypatch, offset):
    now = clock.now()
    hold_clock(monkeypatch, now)
    body = order_body()
    response = await http.post(
        URL, content=body, headers=signed(await secret_of(database), body, at=now + offset)
    )
    assert response.status_code == 200, response.text


async def test_a_rotated_secret_keeps_the_old_one_valid_for_24_hours(
    http, database, keys, monkeypatch
):
    old = await secret_of(database)
    rotated_at = clock.now()
    new, until = await rotate_webhook_secret(database, SHOP, at=rotated_at)
    assert new != old and new.startswith("whsec_") and await secret_of(database) == new
    assert until == rotated_at + dt.timedelta(hours=24)

    for moment, old_still_valid in (
        (rotated_at, True),
        (rotated_at + dt.timedelta(hours=23, minutes=59), True),
        (rotated_at + dt.timedelta(hours=24), False),
        (rotated_at + dt.timedelta(days=3), False),
    ):
        hold_clock(monkeypatch, moment)
        body = order_body(external_id=f"R-{moment.timestamp()}")
        with_old = await http.post(URL, content=body, headers=signed(old, body, at=moment))
        assert with_old.status_code == (200 if old_still_valid else 401), moment
        with_new = await http.post(URL, content=body, headers=signed(new, body, at=moment))
        assert with_new.status_code == 200, moment
    # Rotating again ends the first secret at once; the second is now the previous one.
    newest, _ = await rotate_webhook_secret(database, SHOP, at=rotated_at)
    hold_clock(monkeypatch, rotated_at)
    body = order_body(external_id="R-last")
    assert unauthenticated(await http.post(URL, content=body, headers=signed(old, body)))
    for secret in (new, newest):
        assert (await http.post(URL, content=body, headers=signed(secret, body))).status_code == 200


async def test_a_shop_made_before_standard_webhooks_keeps_its_key(http, database, keys):
    legacy = "ab" * 32
    await database.shops.update_one({"_id": SHOP}, {"$set": {"webhookSecret": legacy}})
    secret = await secret_of(database)
    assert base64.b64decode(secret.removeprefix("whsec_")) == legacy.encode()
    body = order_body()
    assert (await http.post(URL, content=body, headers=signed(secret, body))).status_code == 200


async def test_the_shop_must_be_known_and_its_own_secret_used(http, database, keys):
    body = order_body()
    headers = signed(await secret_of(database), body)
    for url in (
        "/webhooks/orders",
        "/webhooks/orders?shop=no-such-shop",
        "/webhooks/orders?shop=BAD%20ID",
        f"/webhooks/orders?shop={OTHER_SHOP}",
    ):
        response = await http.post(url, content=body, headers=headers)
        assert unauthenticated(response), url
        assert response.json()["errors"][0]["message"] == "Unknown shop or bad signature."
    assert await database.orders.count_documents({}) == 0


async def test_signed_but_unusable_bodies_leave_the_id_free_for_the_fixed_delivery(
    http, database, keys
):
    secret = await secret_of(database)
    for raw in (b"not json", b"[1, 2]", b'"an order"'):
        response = await http.post(URL, content=raw, headers=signed(secret, raw, "msg_1"))
        assert response.status_code == 400, raw
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Valid JSON, but not an OrderInput: coercion errors name the problem.
    for raw in (
        orjson.dumps({"externalId": "X"}),
        order_body(lineItems=[{"title": "A", "quantity": "two", "unitPrice": "1"}]),
    ):
        response = await http.post(URL, content=raw, headers=signed(secret, raw, "msg_1"))
        assert response.status_code == 400, raw
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Refused by the rules: 422 with the same userErrors orderRecord gives.
    raw = order_body(total="99.99")
    response = await http.post(URL, content=raw, headers=signed(secret, raw, "msg_1"))
    assert response.status_code == 422
    [error] = response.json()["userErrors"]
    assert error["field"] == ["input", "total"] and error["code"] == "INVALID"
    assert await nothing_written(database)
    # Nothing was applied under msg_1, so the sender's corrected delivery is.
    good = order_body()
    response = await http.post(URL, content=good, headers=signed(secret, good, "msg_1"))
    assert response.status_code == 200 and response.json()["order"]["externalId"] == "W-1"


async def test_a_delivery_that_fails_while_applying_does_not_keep_its_id(
    http, database, keys, monkeypatch
):
    secret = await secret_of(database)
    body = order_body()
    real = webhook_endpoint._record

    async def failing(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhook_endpoint, "_record", failing)
    failed = await http.post(URL, content=body, headers=signed(secret, body, "msg_f"))
    # The sender sees a server error, so it retries; the cause stays in our log.
    assert failed.status_code == 500
    assert failed.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "database went away" not in failed.text
    assert await database.webhook_receipts.count_documents({}) == 0
    monkeypatch.setattr(webhook_endpoint, "_record", real)
    retry = await http.post(URL, content=body, headers=signed(secret, body, "msg_f"))
    assert retry.status_code == 200 and retry.json()["order"]["externalId"] == "W-1"
    assert (await contact_doc(database))["orderCount"] == 1


async def test_two_deliveries_of_one_id_at_once_apply_once(http, database, keys):
    secret = await secret_of(database)
    body = order_body()
    headers = signed(secret, body, "msg_twice")
    responses = await asyncio.gather(
        *(http.post(URL, content=body, headers=headers) for _ in range(4))
    )
    applied = [r for r in responses if r.status_code == 200 and "order" in r.json()]
    assert len(applied) == 1, [r.text for r in responses]
    for other in responses:
        if other is not applied[0]:
            assert other.status_code in (200, 503), other.text
            if other.status_code == 503:
                assert other.headers["Retry-After"] == "60"
    receipt = await database.webhook_receipts.find_one({"webhookId": "msg_twice"})
    assert receipt["state"] == APPLIED
    assert (await contact_doc(database))["activityCount"] == 1


async def test_a_delivery_being_applied_elsewhere_asks_for_a_retry_until_its_claim_lapses(
    http, database, keys
):
    secret = await secret_of(database)
    body = order_body()
    now = clock.now()
    claim = {
        "shopId": SHOP,
        "webhookId": "msg_held",
        "state": APPLYING,
        "claim": "another process",
        "leaseUntil": now + dt.timedelta(seconds=30),
        "receivedAt": now,
        "expiresAt": now + KEEP_FOR,
    }
    await database.webhook_receipts.insert_one(claim)
    busy = await http.post(URL, content=body, headers=signed(secret, body, "msg_held"))
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "60"
    assert busy.json()["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    assert await database.orders.count_documents({}) == 0
    # The process holding it died: once its lease is over, the next delivery applies.
    await database.webhook_receipts.update_one(
        {"webhookId": "msg_held"}, {"$set": {"leaseUntil": now - dt.timedelta(seconds=1)}}
    )
    taken = await http.post(URL, content=body, headers=signed(secret, body, "msg_held"))
    assert taken.status_code == 200 and taken.json()["order"]["externalId"] == "W-1"
    receipt = await database.webhook_receipts.find_one({"webhookId": "msg_held"})
    assert receipt["state"] == APPLIED and receipt["claim"] != "another process"


async def test_ids_are_kept_well_past_the_tolerance_and_then_expire(http, database, keys):
    body = order_body()
    await http.post(URL, content=body, headers=signed(await secret_of(database), body, "msg_k"))
    receipt = await database.webhook_receipts.find_one({"webhookId": "msg_k"})
    assert receipt["expiresAt"] - receipt["receivedAt"] == KEEP_FOR >= dt.timedelta(hours=24)
    indexes = await database.webhook_receipts.index_information()
    ttl = [i for i in indexes.values() if i["key"] == [("expiresAt", 1)]]
    assert ttl and ttl[0]["expireAfterSeconds"] == 0
    unique = [i for i in indexes.values() if i["key"] == [("shopId", 1), ("webhookId", 1)]]
    assert unique and unique[0]["unique"]


async def test_an_older_report_arriving_later_changes_nothing(http, database, keys):
    """The issue's scenario, with each report its own delivery (a late queue, not a replay)."""
    secret = await secret_of(database)
    open_report = order_body(updatedAt="2025-05-01T12:00:00Z", refunded="0")
    fulfilled = order_body(status="FULFILLED", refunded="5", updatedAt="2025-05-02T09:00:00Z")
    for body in (open_report, fulfilled):
        assert (await http.post(URL, content=body, headers=signed(secret, body))).status_code == 200
    before = await contact_doc(database)

    late = await http.post(URL, content=open_report, headers=signed(secret, open_report))

    assert late.status_code == 200, late.text
    assert late.json()["order"]["status"] == "FULFILLED" and late.json()["userErrors"] == []
    order = await database.orders.find_one({"shopId": SHOP, "externalId": "W-1"})
    assert order["status"] == "FULFILLED" and order["refunded"].to_decimal() == 5
    after = await contact_doc(database)
    assert after["activityCount"] == before["activityCount"]
    for stat in ("orderCount", "totalSpent", "firstOrderAt", "lastOrderAt", "orderRev"):
        assert after[stat] == before[stat], stat


async def test_the_readme_plain_hmac_sender_is_understood(http, database, keys):
    secret = await secret_of(database)
    body = order_body()
    webhook_id, timestamp = "msg_plain", str(int(dt.datetime.now(dt.UTC).timestamp()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    assert (await http.post(URL, content=body, headers=headers)).status_code == 200


async def test_the_webhook_needs_no_api_key_and_accepts_only_post(http, database, keys):
    assert (await http.get(URL)).status_code == 405
    body = order_body()
    headers = {**signed(await secret_of(database), body), "Authorization": "Bearer wrong"}
    assert (await http.post(URL, content=body, headers=headers)).status_code == 200


# ---------------------------------------------------------------- the real server


def cli_env(server: RunningServer) -> dict[str, str]:
    """The environment a `contactgraph` command needs to reach the database `server` uses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "CONTACTGRAPH_"))}
    if os.environ.get("MONGODB_URI"):  # the name running_server gives the server's database
        port = server.url.rsplit(":", 1)[1]
        env["MONGODB_URI"] = os.environ["MONGODB_URI"]
        env["CONTACTGRAPH_DATABASE"] = f"contactgraph_clients_{os.getpid()}_{port}"
    return env


def webhook_secret_cli(data_dir: Path, server: RunningServer, *extra: str) -> tuple[str, str]:
    done = subprocess.run(
        [CONTACTGRAPH, "--data-dir", str(data_dir), "shops", "webhook-secret", "--shop", "demo"]
        + list(extra),
        capture_output=True,
        text=True,
        env=cli_env(server),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr


DEMO_ORDER = """
query($email: String!) {
  contactByEmail(email: $email) { orderCount orders(first: 5) { nodes { externalId status } } }
}
"""


def test_the_real_server_takes_deliveries_signed_with_the_cli_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "serve"
    with running_server(data_dir) as server:
        url = f"{server.url}/webhooks/orders?shop=demo"
        secret, _ = webhook_secret_cli(data_dir, server)
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32

        placed = order_body("REAL-1", updatedAt="2025-05-01T12:00:00Z")
        headers = signed(secret, placed, "msg_real_1")
        assert httpx.post(url, content=placed, headers=headers, timeout=30).status_code == 200
        # The same delivery again (a replay): answered, not applied.
        replay = httpx.post(url, content=placed, headers=headers, timeout=30)
        assert replay.status_code == 200 and replay.json()["alreadyApplied"] is True
        tampered = placed.replace(b'"7.30"', b'"0.01"')
        assert httpx.post(url, content=tampered, headers=headers, timeout=30).status_code == 401
        fulfilled = order_body("REAL-1", status="FULFILLED", updatedAt="2025-05-02T12:00:00Z")
        assert (
            httpx.post(url, content=fulfilled, headers=signed(secret, fulfilled), timeout=30)
        ).status_code == 200
        # The first report once more, as a new delivery that arrives late: nothing changes.
        late = httpx.post(url, content=placed, headers=signed(secret, placed), timeout=30)
        assert late.status_code == 200 and late.json()["order"]["status"] == "FULFILLED"

        new, note = webhook_secret_cli(data_dir, server, "--rotate")
        assert new.startswith("whsec_") and new != secret and "still verifies until" in note
        assert webhook_secret_cli(data_dir, server)[0] == new
        for key, external_id in ((secret, "REAL-2"), (new, "REAL-3")):
            body = order_body(external_id)
            response = httpx.post(url, content=body, headers=signed(key, body), timeout=30)
            assert response.status_code == 200, response.text

        seen = server.graphql(DEMO_ORDER, {"email": EMAIL_KEY})["data"]["contactByEmail"]
        assert seen["orderCount"] == 3
        assert {(o["externalId"], o["status"]) for o in seen["orders"]["nodes"]} == {
            ("REAL-1", "FULFILLED"),
            ("REAL-2", "OPEN"),
            ("REAL-3", "OPEN"),
        }
