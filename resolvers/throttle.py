"""Each key's cost budget: a leaky bucket in MongoDB, spent with one atomic update.

A key starts with `capacity` points; every operation takes its cost, and
points come back at `restore_rate` per second up to `capacity`. One
document per key in `throttle` holds the level and when it was computed.
A single `findAndModify` with an update pipeline restores the level for the
time passed, takes the cost only if it fits and returns the result, so
every worker and every instance sees the same bucket and two requests can
never both spend the last points.

The time is the API process's (`resolvers.clock`), passed in: tests can
move it, and no server-side clock is needed. Instances' clocks differ by
milliseconds under NTP; the stored time only moves forward (an instance
behind it restores nothing until its clock passes it), so skew never
restores points twice.

An idle bucket is full once `capacity / restore_rate` seconds have passed,
the same as no bucket at all: its `expiresAt` lets MongoDB's TTL monitor
remove it then.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from loaders.mongo import Database, Doc

# Decisions kept from a bucket's first requests (more than can race to create
# it), for as long after its creation as such a race can last.
FIRST_DECISIONS = 64
CREATION_RACE_MS = 2_000


@dataclass(frozen=True)
class Bucket:
    capacity: int
    restore_rate: float  # points per second

    @property
    def refill_ms(self) -> float:
        """Milliseconds from empty to full."""
        return self.capacity / self.restore_rate * 1000


@dataclass(frozen=True)
class ThrottleStatus:
    """The bucket after one request, and whether that request's cost was taken."""

    granted: bool
    cost: int
    available: float
    bucket: Bucket

    @property
    def retry_after(self) -> int:
        """Whole seconds until the refused cost has restored (at least 1)."""
        missing = min(self.cost, self.bucket.capacity) - self.available
        return max(1, math.ceil(missing / self.bucket.restore_rate))

    def as_extension(self) -> dict[str, Any]:
        """Shopify's `throttleStatus`: what the next request can spend."""
        return {
            "maximumAvailable": self.bucket.capacity,
            "currentlyAvailable": math.floor(self.available),
            "restoreRate": self.bucket.restore_rate,
        }


def spend_pipeline(
    bucket: Bucket, shop_id: str, cost: int, now: dt.datetime, request: ObjectId
) -> list[Doc]:
    """The update: restore for the time since `at`, then take `cost` if the level covers it.

    The decisions of a bucket's first two seconds stay in `first` under
    their request's id: when several requests create a key's bucket at once, the
    embedded server can apply an upsert that lost the race and answer
    nothing, and then the decision is read from there. (Only creation races;
    an existing bucket always answers.)
    """
    since = {"$ifNull": ["$at", now]}
    elapsed_ms = {"$max": [0, {"$subtract": [now, since]}]}
    restored = {
        "$min": [
            bucket.capacity,
            {
                "$add": [
                    {"$ifNull": ["$level", bucket.capacity]},
                    {"$multiply": [elapsed_ms, bucket.restore_rate / 1000]},
                ]
            },
        ]
    }
    decision = [{"request": request, "granted": "$granted"}]
    return [
        {
            "$set": {
                "level": restored,
                "at": {"$max": [now, since]},
                "shopId": shop_id,
                "createdAt": {"$ifNull": ["$createdAt", now]},
            }
        },
        {"$set": {"granted": {"$gte": ["$level", cost]}}},
        {
            "$set": {
                "level": {"$cond": ["$granted", {"$subtract": ["$level", cost]}, "$level"]},
                "expiresAt": {"$add": ["$at", bucket.refill_ms]},
                "first": {
                    "$cond": [
                        {"$lt": [{"$subtract": [now, "$createdAt"]}, CREATION_RACE_MS]},
                        {
                            "$cond": [
                                {"$lt": [{"$size": {"$ifNull": ["$first", []]}}, FIRST_DECISIONS]},
                                {"$concatArrays": [{"$ifNull": ["$first", []]}, decision]},
                                "$first",
                            ]
                        },
                        "$$REMOVE",  # long past its creation: nothing races it any more
                    ]
                },
            }
        },
    ]


async def spend(
    database: Database,
    key_id: ObjectId,
    shop_id: str,
    cost: int,
    bucket: Bucket,
    now: dt.datetime,
) -> ThrottleStatus:
    """Takes `cost` points from the key's bucket if they are there; a cost of 0 only reads it."""
    request = ObjectId()
    pipeline = spend_pipeline(bucket, shop_id, cost, now, request)
    try:
        doc = await _update(database, key_id, pipeline)
    except DuplicateKeyError:
        # The key's first two requests raced to create its bucket and this one
        # lost without being applied (MongoDB mostly retries this itself).
        doc = await _update(database, key_id, pipeline)
    if doc is None:
        doc = await _decision(database, key_id, request)
    return ThrottleStatus(bool(doc["granted"]), cost, float(doc["level"]), bucket)


async def _update(database: Database, key_id: ObjectId, pipeline: list[Doc]) -> Doc | None:
    found: Doc | None = await database.throttle.find_one_and_update(
        {"_id": key_id},
        pipeline,
        upsert=True,
        return_document=ReturnDocument.AFTER,
        projection={"level": 1, "granted": 1},
    )
    return found


async def _decision(database: Database, key_id: ObjectId, request: ObjectId) -> Doc:
    """This request's decision, when its update was applied but the reply was lost."""
    stored = await database.throttle.find_one({"_id": key_id}, {"level": 1, "first": 1}) or {}
    for decision in stored.get("first", []):
        if decision.get("request") == request:
            return {"granted": decision["granted"], "level": stored["level"]}
    raise RuntimeError(f"the throttle decision of a request of key {key_id} is lost")
