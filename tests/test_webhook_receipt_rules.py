"""Webhook receipt rules to the edge: who holds a delivery's id, for how long, and what is stored.

tests/test_webhooks.py tells the story through HTTP (200, 503 with
Retry-After, the order applied once); these pin the claim underneath: the
receipt a first delivery stores, the answers a second delivery of the same
id gets while the first is applied, after it was applied and after it
failed, the lease's end to the millisecond, one shop's ids apart from
another's, and the webhook-id's length bound on both sides.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP

from graph.http.webhooks import WebhookRefused, verify
from resolvers.shops import new_webhook_secret, webhook_secret_key
from resolvers.webhook_receipts import (
    APPLIED,
    APPLYING,
    CLAIM_LEASE,
    KEEP_FOR,
    WEBHOOK_ID_MAX,
    Claim,
    Seen,
    claim_delivery,
)

# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
T0 = dt.datetime(2126, 4, 1, 10, 0, 0, 125_000, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)


async def receipt(database: Any, webhook_id: str = "msg_1", shop: str = SHOP) -> dict[str, Any]:
    found = await database.webhook_receipts.find_one({"shopId": shop, "webhookId": webhook_id})
    assert found is not None
    return found


async def claimed(database: Any, webhook_id: str = "msg_1", at: dt.datetime = T0) -> Claim:
    claim = await claim_delivery(database, SHOP, webhook_id, at)
    assert isinstance(claim, Claim)
    return claim


def test_a_receipt_is_kept_three_days_and_a_claim_lasts_a_minute():
    assert KEEP_FOR == dt.timedelta(hours=72)
    assert CLAIM_LEASE == dt.timedelta(seconds=60)
    assert WEBHOOK_ID_MAX == 256


# -- the first delivery ------------------------------------------------------


async def test_the_first_delivery_claims_the_id_and_stores_its_receipt(database):
    claim = await claim_delivery(database, SHOP, "msg_1", T0)

    assert isinstance(claim, Claim)
    assert (claim.database, claim.shop_id, claim.webhook_id) == (database, SHOP, "msg_1")
    stored = await receipt(database)
    assert {k: v for k, v in stored.items() if k != "_id"} == {
        "shopId": SHOP,
        "webhookId": "msg_1",
        "state": APPLYING,
        "claim": claim.token,
        "leaseUntil": T0 + dt.timedelta(seconds=60),
        "receivedAt": T0,
        "expiresAt": T0 + dt.timedelta(hours=72),
    }
    assert await database.webhook_receipts.count_documents({}) == 1


async def test_applied_marks_the_receipt_applied_and_ends_the_lease(database):
    claim = await claimed(database)

    await claim.applied()

    stored = await receipt(database)
    assert stored["state"] == APPLIED
    assert "leaseUntil" not in stored
    assert (stored["claim"], stored["receivedAt"], stored["expiresAt"]) == (
        claim.token,
        T0,
        T0 + KEEP_FOR,
    )


# -- a second delivery of the same id ----------------------------------------


async def test_a_second_delivery_while_the_first_is_applied_is_busy_and_changes_nothing(database):
    first = await claimed(database)
    before = await receipt(database)

    for at in (T0, T0 + CLAIM_LEASE - MS):
        assert await claim_delivery(database, SHOP, "msg_1", at) is Seen.BUSY

    assert await receipt(database) == before
    assert before["claim"] == first.token


async def test_of_two_deliveries_at_once_exactly_one_claims_the_id(database):
    answers = await asyncio.gather(*(claim_delivery(database, SHOP, "msg_1", T0) for _ in range(2)))

    claims = [a for a in answers if isinstance(a, Claim)]
    assert len(claims) == 1
    assert [a for a in answers if not isinstance(a, Claim)] == [Seen.BUSY]
    assert (await receipt(database))["claim"] == claims[0].token
    assert await database.webhook_receipts.count_documents({}) == 1


async def test_an_applied_id_is_seen_as_applied_long_after_its_lease(database):
    claim = await claimed(database)
    await claim.applied()
    before = await receipt(database)

    for at in (T0, T0 + CLAIM_LEASE, T0 + dt.timedelta(hours=71)):
        assert await claim_delivery(database, SHOP, "msg_1", at) is Seen.APPLIED

    assert await receipt(database) == before


async def test_a_failed_delivery_frees_the_id_so_the_retry_applies(database):
    first = await claimed(database)

    await first.release()
    assert await database.webhook_receipts.count_documents({}) == 0

    retry = await claimed(database, at=T0 + dt.timedelta(seconds=5))
    assert retry.token != first.token
    stored = await receipt(database)
    assert (stored["state"], stored["claim"], stored["receivedAt"]) == (
        APPLYING,
        retry.token,
        T0 + dt.timedelta(seconds=5),
    )


async def test_release_after_applied_keeps_the_receipt(database):
    claim = await claimed(database)
    await claim.applied()

    await claim.release()

    assert (await receipt(database))["state"] == APPLIED
    assert await claim_delivery(database, SHOP, "msg_1", T0) is Seen.APPLIED


# -- a claim whose holder died -----------------------------------------------


async def test_a_lapsed_claim_is_taken_over_at_the_lease_end_to_the_millisecond(database):
    first = await claimed(database)
    lease_end = T0 + CLAIM_LEASE

    assert await claim_delivery(database, SHOP, "msg_1", lease_end - MS) is Seen.BUSY
    taker = await claim_delivery(database, SHOP, "msg_1", lease_end)

    assert isinstance(taker, Claim)
    assert taker.token != first.token
    assert (taker.shop_id, taker.webhook_id) == (SHOP, "msg_1")
    stored = await receipt(database)
    assert {k: v for k, v in stored.items() if k != "_id"} == {
        "shopId": SHOP,
        "webhookId": "msg_1",
        "state": APPLYING,
        "claim": taker.token,
        "leaseUntil": lease_end + CLAIM_LEASE,
        # Taking over keeps when the id was first received and when it is forgotten.
        "receivedAt": T0,
        "expiresAt": T0 + KEEP_FOR,
    }
    # The taker holds a lease of its own.
    assert await claim_delivery(database, SHOP, "msg_1", lease_end + CLAIM_LEASE - MS) is Seen.BUSY


async def test_the_late_holder_of_a_lapsed_claim_can_neither_settle_nor_free_it(database):
    late = await claimed(database)
    taker = await claimed(database, at=T0 + dt.timedelta(minutes=5))

    await late.release()
    await late.applied()

    stored = await receipt(database)
    assert (stored["state"], stored["claim"]) == (APPLYING, taker.token)
    await taker.applied()
    assert (await receipt(database))["state"] == APPLIED


async def test_a_claim_is_taken_over_at_most_once(database):
    await claimed(database)
    at = T0 + dt.timedelta(minutes=5)

    answers = await asyncio.gather(*(claim_delivery(database, SHOP, "msg_1", at) for _ in range(2)))

    assert sorted(isinstance(a, Claim) for a in answers) == [False, True]
    assert Seen.BUSY in answers


# -- shops and ids -----------------------------------------------------------


async def test_each_shop_and_each_id_is_claimed_on_its_own(database):
    mine = await claimed(database)
    theirs = await claim_delivery(database, OTHER_SHOP, "msg_1", T0)
    other_id = await claimed(database, "msg_2")

    assert isinstance(theirs, Claim) and theirs.shop_id == OTHER_SHOP
    assert await database.webhook_receipts.count_documents({}) == 3
    await mine.applied()
    await other_id.release()

    assert (await receipt(database, shop=OTHER_SHOP))["state"] == APPLYING
    assert await claim_delivery(database, OTHER_SHOP, "msg_1", T0) is Seen.BUSY
    assert await claim_delivery(database, SHOP, "msg_1", T0) is Seen.APPLIED
    await theirs.release()
    assert await database.webhook_receipts.count_documents({"shopId": OTHER_SHOP}) == 0
    assert (await receipt(database))["state"] == APPLIED


async def test_a_lapsed_claim_of_one_shop_is_not_taken_over_from_another(database):
    await claim_delivery(database, OTHER_SHOP, "msg_1", T0)
    mine = await claimed(database, at=T0 + dt.timedelta(minutes=5))

    theirs = await receipt(database, shop=OTHER_SHOP)
    assert theirs["claim"] != mine.token and theirs["leaseUntil"] == T0 + CLAIM_LEASE
    assert (await receipt(database))["receivedAt"] == T0 + dt.timedelta(minutes=5)


async def test_an_applied_id_of_another_shop_is_not_applied_here(database):
    theirs = await claim_delivery(database, OTHER_SHOP, "msg_1", T0)
    assert isinstance(theirs, Claim)
    await theirs.applied()
    mine = await claimed(database, "msg_2")
    await mine.applied()

    # Neither an id of another shop nor another id of this shop is this delivery.
    assert isinstance(await claim_delivery(database, SHOP, "msg_1", T0), Claim)


async def test_settling_one_id_leaves_the_others_claims_alone(database):
    one = await claimed(database, "msg_1")
    two = await claimed(database, "msg_2")
    theirs = await claim_delivery(database, OTHER_SHOP, "msg_1", T0)
    assert isinstance(theirs, Claim)

    await one.applied()
    assert (await receipt(database, "msg_2"))["state"] == APPLYING
    assert (await receipt(database, shop=OTHER_SHOP))["state"] == APPLYING
    await two.release()
    assert (await receipt(database, "msg_1"))["state"] == APPLIED
    assert (await receipt(database, shop=OTHER_SHOP))["state"] == APPLYING


# -- a receipt freed while a delivery looks at it ----------------------------


@dataclass
class Racing:
    """The receipts, with another delivery that claims the id just before each insert and
    frees it again (its delivery failed) just before each look, `races` times."""

    real: Any
    races: int
    inserts: int = 0

    async def insert_one(self, doc: dict[str, Any]) -> Any:
        self.inserts += 1
        if self.races > 0:
            await self.real.insert_one({**doc, "_id": ObjectId(), "claim": "another delivery"})
        return await self.real.insert_one(doc)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.find_one_and_update(*args, **kwargs)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        if self.races > 0:
            self.races -= 1
            await self.real.delete_one({"claim": "another delivery"})
        return await self.real.find_one(*args, **kwargs)


@dataclass
class RacedDatabase:
    webhook_receipts: Racing


async def test_an_id_freed_between_the_insert_and_the_look_is_claimed_again(database):
    racing = RacedDatabase(Racing(database.webhook_receipts, races=2))

    claim = await claim_delivery(racing, SHOP, "msg_1", T0)  # type: ignore[arg-type]

    assert isinstance(claim, Claim)
    assert racing.webhook_receipts.inserts == 3
    stored = await receipt(database)
    assert (stored["claim"], stored["state"]) == (claim.token, APPLYING)
    assert await database.webhook_receipts.count_documents({}) == 1


async def test_a_delivery_that_keeps_losing_the_race_gives_up_as_busy_after_three_tries(database):
    racing = RacedDatabase(Racing(database.webhook_receipts, races=10))

    assert await claim_delivery(racing, SHOP, "msg_1", T0) is Seen.BUSY  # type: ignore[arg-type]

    assert racing.webhook_receipts.inserts == 3
    assert await database.webhook_receipts.count_documents({}) == 0


# -- the webhook-id's length -------------------------------------------------


def signed_headers(secret: str, webhook_id: str, at: dt.datetime, body: bytes) -> dict[str, str]:
    key = webhook_secret_key(secret)
    assert key is not None
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


@pytest.mark.parametrize("webhook_id", ["m", "m" * 256, "!~" * 128])
async def test_a_webhook_id_of_1_to_256_visible_characters_is_accepted_and_claimed(
    database, webhook_id
):
    secret = new_webhook_secret()
    at = T0.replace(microsecond=0)
    headers = signed_headers(secret, webhook_id, at, b"{}")

    assert verify([secret], headers, b"{}", at) == webhook_id
    claim = await claimed(database, webhook_id, at)
    assert (await receipt(database, webhook_id))["claim"] == claim.token


@pytest.mark.parametrize("webhook_id", ["m" * 257, "msg 1", "msg_\u00e9"])
def test_a_longer_webhook_id_or_one_with_other_characters_is_refused(webhook_id):
    secret = new_webhook_secret()
    at = T0.replace(microsecond=0)
    headers = signed_headers(secret, webhook_id, at, b"{}")

    with pytest.raises(WebhookRefused) as refused:
        verify([secret], headers, b"{}", at)
    assert str(refused.value) == (
        "webhook-id must be 1-256 visible ASCII characters and "
        "webhook-timestamp whole Unix seconds."
    )
