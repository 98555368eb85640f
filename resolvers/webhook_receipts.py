"""Which webhook deliveries a shop has already had applied, by their `webhook-id`.

A sender retries a delivery under the same id (with a fresh timestamp and
signature) until it sees a 2xx, and anyone who captured a signed request
can send it again within the timestamp tolerance. The id is claimed before
the delivery is applied, through the unique (shopId, webhookId) index, so
of two deliveries of one id only one applies; the claim becomes APPLIED
when the delivery succeeded and is removed when it did not, so the
sender's retry is applied then. A claim whose holder died (the process
stopped mid-way) lapses after CLAIM_LEASE and the next delivery takes it
over: applying an order twice is harmless (orders are idempotent on their
externalId and ordered by updatedAt), only the id check spares the work
and the doubt.

Ids are kept for KEEP_FOR, far past the 5-minute timestamp tolerance and
past the retry schedules of common senders (about a day), then a TTL index
removes them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from loaders.mongo import Database

KEEP_FOR = dt.timedelta(hours=72)
# Far longer than recording an order takes (one transaction, milliseconds); a
# recording that overruns it is still harmless, as said above.
CLAIM_LEASE = dt.timedelta(seconds=60)
WEBHOOK_ID_MAX = 256
APPLYING, APPLIED = "APPLYING", "APPLIED"


class Seen(StrEnum):
    APPLIED = "APPLIED"  # applied before: answer success, apply nothing
    BUSY = "BUSY"  # another delivery of this id is being applied right now


@dataclass(frozen=True)
class Claim:
    """This delivery holds the id: it applies the delivery, then settles the claim."""

    database: Database
    shop_id: str
    webhook_id: str
    token: ObjectId

    def _mine(self) -> dict[str, object]:
        return {"shopId": self.shop_id, "webhookId": self.webhook_id, "claim": self.token}

    async def applied(self) -> None:
        await self.database.webhook_receipts.update_one(
            self._mine(), {"$set": {"state": APPLIED}, "$unset": {"leaseUntil": ""}}
        )

    async def release(self) -> None:
        """Nothing was applied: forget the id, so the sender's retry is applied."""
        await self.database.webhook_receipts.delete_one({**self._mine(), "state": APPLYING})


async def claim_delivery(
    database: Database, shop_id: str, webhook_id: str, at: dt.datetime
) -> Claim | Seen:
    """Claim a delivery's id before applying it; Seen when it was applied or is being applied."""
    receipts = database.webhook_receipts
    for _ in range(3):
        token = ObjectId()
        try:
            await receipts.insert_one(
                {
                    "shopId": shop_id,
                    "webhookId": webhook_id,
                    "state": APPLYING,
                    "claim": token,
                    "leaseUntil": at + CLAIM_LEASE,
                    "receivedAt": at,
                    "expiresAt": at + KEEP_FOR,
                }
            )
            return Claim(database, shop_id, webhook_id, token)
        except DuplicateKeyError:
            pass
        # A claim whose holder never settled it is taken over, atomically.
        taken = await receipts.find_one_and_update(
            {
                "shopId": shop_id,
                "webhookId": webhook_id,
                "state": APPLYING,
                "leaseUntil": {"$lte": at},
            },
            {"$set": {"claim": token, "leaseUntil": at + CLAIM_LEASE}},
            projection={"_id": 1},
        )
        if taken is not None:
            return Claim(database, shop_id, webhook_id, token)
        existing = await receipts.find_one(
            {"shopId": shop_id, "webhookId": webhook_id}, {"state": 1}
        )
        if existing is not None:
            return Seen.APPLIED if existing["state"] == APPLIED else Seen.BUSY
        # Released between the insert and the look: claim it again.
    return Seen.BUSY
