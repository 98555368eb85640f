"""The leaky bucket's arithmetic, checked to the point and the millisecond.

tests/test_throttle.py sees the budget through the API (429s, headers,
races between clients); these call `spend` directly with a chosen time, for
the exact level, what is stored, and when a refused request may retry.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from resolvers import clock, throttle
from resolvers.throttle import Bucket, ThrottleStatus, spend

SHOP = "acme"
BUCKET = Bucket(capacity=100, restore_rate=10)


@pytest.fixture
def start() -> dt.datetime:
    # Near the real time: MongoDB's TTL monitor removes buckets that look expired to it.
    return clock.now()


def later(at: dt.datetime, ms: int) -> dt.datetime:
    return at + dt.timedelta(milliseconds=ms)


async def stored(database: Any, key: ObjectId) -> dict[str, Any]:
    doc = await database.throttle.find_one({"_id": key})
    assert doc is not None
    return doc


# -- the status ---------------------------------------------------------------------


def test_a_bucket_refills_from_empty_in_capacity_over_rate_seconds():
    assert Bucket(100, 10).refill_ms == 10_000
    assert Bucket(2_000, 100).refill_ms == 20_000
    assert Bucket(3, 4).refill_ms == 750


@pytest.mark.parametrize(
    ("cost", "available", "retry_after"),
    [
        (50, 40.0, 1),  # 10 missing points are one second
        (50, 39.9, 2),  # 10.1 points: the next whole second
        (50, 30.0, 2),
        (50, 49.99, 1),  # never less than one second
        (100, 0.0, 10),
        (150, 0.0, 10),  # more than the bucket holds: waits for a full bucket
        (150, 99.0, 1),
    ],
)
def test_a_refused_request_may_retry_once_its_cost_has_restored(cost, available, retry_after):
    assert ThrottleStatus(False, cost, available, BUCKET).retry_after == retry_after


def test_the_extension_shows_whole_points_available_of_the_bucket():
    assert ThrottleStatus(True, 1, 39.99, BUCKET).as_extension() == {
        "maximumAvailable": 100,
        "currentlyAvailable": 39,
        "restoreRate": 10,
    }


# -- spending -----------------------------------------------------------------------


async def test_a_new_bucket_starts_full_and_is_stored_with_its_first_decision(database, start):
    key = ObjectId()

    status = await spend(database, key, SHOP, 30, BUCKET, start)

    assert status == ThrottleStatus(True, 30, 70.0, BUCKET)
    doc = await stored(database, key)
    assert {k: v for k, v in doc.items() if k != "first"} == {
        "_id": key,
        "level": 70,
        "at": start,
        "shopId": SHOP,
        "createdAt": start,
        "granted": True,
        "expiresAt": later(start, 10_000),
    }
    assert [d["granted"] for d in doc["first"]] == [True]
    assert isinstance(doc["first"][0]["request"], ObjectId)


async def test_the_last_points_are_spent_and_one_more_is_refused_taking_nothing(database, start):
    key = ObjectId()
    assert (await spend(database, key, SHOP, 100, BUCKET, start)).granted
    assert (await stored(database, key))["level"] == 0

    refused = await spend(database, key, SHOP, 1, BUCKET, start)

    assert refused == ThrottleStatus(False, 1, 0.0, BUCKET)
    assert (await stored(database, key))["level"] == 0


async def test_a_cost_of_zero_only_reads_the_bucket(database, start):
    key = ObjectId()
    await spend(database, key, SHOP, 40, BUCKET, start)

    read = await spend(database, key, SHOP, 0, BUCKET, start)

    assert read == ThrottleStatus(True, 0, 60.0, BUCKET)


async def test_points_restore_at_the_rate_per_millisecond_up_to_the_capacity(database, start):
    key = ObjectId()
    await spend(database, key, SHOP, 100, BUCKET, start)

    assert (await spend(database, key, SHOP, 0, BUCKET, later(start, 250))).available == 2.5
    assert (await spend(database, key, SHOP, 3, BUCKET, later(start, 300))).available == 0.0
    # 5 s later: 50 points back, no more.
    assert (await spend(database, key, SHOP, 0, BUCKET, later(start, 5_300))).available == 50.0
    # Long idle: full, never more than full.
    assert (await spend(database, key, SHOP, 0, BUCKET, later(start, 60_000))).available == 100.0


async def test_a_bucket_expires_when_it_would_be_full_again(database, start):
    key = ObjectId()
    await spend(database, key, SHOP, 10, BUCKET, start)
    await spend(database, key, SHOP, 10, BUCKET, later(start, 1_500))

    doc = await stored(database, key)
    assert (doc["at"], doc["expiresAt"]) == (later(start, 1_500), later(start, 11_500))
    assert doc["createdAt"] == start


async def test_a_clock_behind_the_stored_time_neither_restores_nor_moves_it_back(database, start):
    key = ObjectId()
    await spend(database, key, SHOP, 60, BUCKET, start)

    behind = await spend(database, key, SHOP, 10, BUCKET, later(start, -3_000))

    assert behind.available == 30.0
    assert (await stored(database, key))["at"] == start


async def test_each_key_has_its_own_bucket(database, start):
    one, other = ObjectId(), ObjectId()
    await spend(database, one, SHOP, 100, BUCKET, start)

    assert (await spend(database, other, SHOP, 100, BUCKET, start)).granted
    assert not (await spend(database, one, SHOP, 1, BUCKET, start)).granted


# -- the decisions kept for a creation race -----------------------------------------


async def test_decisions_are_kept_for_the_first_two_seconds_then_dropped(database, start):
    key = ObjectId()
    await spend(database, key, SHOP, 60, BUCKET, start)
    await spend(database, key, SHOP, 60, BUCKET, later(start, 1_999))

    assert [d["granted"] for d in (await stored(database, key))["first"]] == [True, False]

    await spend(database, key, SHOP, 0, BUCKET, later(start, 2_000))

    assert "first" not in await stored(database, key)


async def test_at_most_64_decisions_are_kept(database, start):
    key = ObjectId()
    for _ in range(66):
        await spend(database, key, SHOP, 1, BUCKET, start)

    first = (await stored(database, key))["first"]
    assert len(first) == 64
    assert len({d["request"] for d in first}) == 64


async def test_a_lost_reply_is_answered_from_the_kept_decision(database, start, monkeypatch):
    real = throttle._update

    async def applied_but_lost(*args: Any) -> None:
        await real(*args)

    monkeypatch.setattr(throttle, "_update", applied_but_lost)
    key = ObjectId()
    # Another key's bucket, stored first: only this key's decisions answer.
    await spend(database, ObjectId(), SHOP, 10, BUCKET, start)

    granted = await spend(database, key, SHOP, 70, BUCKET, start)
    refused = await spend(database, key, SHOP, 70, BUCKET, start)

    assert granted == ThrottleStatus(True, 70, 30.0, BUCKET)
    assert refused == ThrottleStatus(False, 70, 30.0, BUCKET)


@pytest.mark.parametrize(
    "bucket",
    [
        None,  # no bucket at all
        {"level": 5},  # past its first two seconds
        {"level": 5, "first": [{"request": 1, "granted": True}]},  # only others' decisions
    ],
)
async def test_a_decision_neither_answered_nor_kept_is_an_error(
    database, start, monkeypatch, bucket
):
    async def lost(*args: Any) -> None:
        return None

    monkeypatch.setattr(throttle, "_update", lost)
    key = ObjectId()
    if bucket is not None:
        await database.throttle.insert_one({"_id": key, **bucket})

    with pytest.raises(RuntimeError) as raised:
        await spend(database, key, SHOP, 1, BUCKET, start)

    assert str(raised.value) == f"the throttle decision of a request of key {key} is lost"


async def test_an_upsert_that_lost_the_creation_race_is_applied_again(database, start, monkeypatch):
    real = throttle._update
    calls: list[ObjectId] = []

    async def lost_race_once(db: Any, key: ObjectId, pipeline: Any) -> Any:
        calls.append(key)
        if len(calls) == 1:
            raise DuplicateKeyError("E11000 duplicate key error")
        return await real(db, key, pipeline)

    monkeypatch.setattr(throttle, "_update", lost_race_once)
    key = ObjectId()

    status = await spend(database, key, SHOP, 25, BUCKET, start)

    assert status == ThrottleStatus(True, 25, 75.0, BUCKET)
    assert calls == [key, key]
    assert (await stored(database, key))["level"] == 75
