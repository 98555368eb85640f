"""The activity log's rules to the edge: entries, the update that records them, the archive spill.

tests/test_activity.py tells the story through the API (pages of a long
log, merges, races); these call `resolvers.activity` directly, with a fixed
clock, for the exact rules: what an entry holds, the spill's bound on both
sides (199 embedded entries stay, the 200th moves the oldest 100), how many
entries one transaction moves, the counters and buckets it leaves, and that
a spill that fails or races leaves every entry where it was.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from typing import Any

import pytest
from bson import ObjectId
from conftest import SHOP
from pymongo.errors import OperationFailure, PyMongoError

from resolvers import activity
from resolvers.activity import (
    BUCKET_SIZE,
    EMBEDDED_KEEP,
    SPILL_AT,
    TRANSACTION_ATTEMPTS,
    bucket_of,
    entry,
    in_transaction,
    merge_updates,
    push,
    sort_key,
    spill_overflow,
)

NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2126, 1, 5, 9, 0, tzinfo=dt.UTC)
KINDS = ("NOTE", "ORDER_PLACED", "FORM_SUBMITTED")


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activity, "now", lambda: NOW)


def at(i: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=i)


def log_of(n: int, start: int = 0) -> list[dict[str, Any]]:
    """n entries one second apart, kinds in turn, oldest first."""
    return [entry(KINDS[i % 3], text=f"entry {i}", at=at(i)) for i in range(start, start + n)]


async def stored_contact(database: Any, entries: list[dict[str, Any]], **fields: Any) -> ObjectId:
    doc = {
        "_id": ObjectId(),
        "shopId": SHOP,
        "activity": entries,
        "activityCount": len(entries),
        "activityEmbedded": len(entries),
        **fields,
    }
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def contact_doc(database: Any, oid: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": oid})
    assert doc is not None
    return doc


async def buckets(database: Any, oid: ObjectId) -> list[dict[str, Any]]:
    """The contact's archive buckets, oldest entries first."""
    return await database.activity_archive.find({"contactId": oid}).sort("minAt", 1).to_list()


async def spill(database: Any, oid: ObjectId) -> None:
    await spill_overflow(database, SHOP, await contact_doc(database, oid))


def expected_bucket(oid: ObjectId, entries: list[dict[str, Any]]) -> dict[str, Any]:
    newest_first = sorted(entries, key=sort_key, reverse=True)
    return {
        "shopId": SHOP,
        "contactId": oid,
        "entries": newest_first,
        "count": len(entries),
        "kindCounts": dict(Counter(e["kind"] for e in entries)),
        "maxAt": newest_first[0]["at"],
        "maxId": newest_first[0]["_id"],
        "minAt": newest_first[-1]["at"],
        "minId": newest_first[-1]["_id"],
        "createdAt": NOW,
    }


def without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


# -- entries and updates (no database) ----------------------------------------


def test_an_entry_holds_its_kind_and_the_time_now_and_nothing_not_given():
    made = entry("CONTACT_CREATED")
    assert made == {"_id": made["_id"], "kind": "CONTACT_CREATED", "at": NOW}
    assert isinstance(made["_id"], ObjectId)
    assert entry("CONTACT_CREATED")["_id"] != made["_id"]


def test_an_entry_keeps_every_detail_given_and_its_own_time():
    order_id = ObjectId()
    made = entry("NOTE", text="Called back", author="Ann Admin", order_id=order_id, at=T0)
    assert made == {
        "_id": made["_id"],
        "kind": "NOTE",
        "at": T0,
        "text": "Called back",
        "author": "Ann Admin",
        "orderId": order_id,
    }


def test_an_empty_text_or_author_is_kept_as_given():
    made = entry("NOTE", text="", author="")
    assert (made["text"], made["author"]) == ("", "")


def test_the_log_orders_by_time_then_by_id():
    first, second = ObjectId(), ObjectId()
    late = {"_id": first, "at": at(5)}
    tie_low, tie_high = {"_id": first, "at": at(1)}, {"_id": second, "at": at(1)}
    assert sort_key(late) == (at(5), first)
    assert sorted([late, tie_high, tie_low], key=sort_key) == [tie_low, tie_high, late]


def test_push_appends_the_entries_oldest_first_and_counts_them():
    a, b, c = entry("NOTE", at=at(3)), entry("NOTE", at=at(1)), entry("ORDER_PLACED", at=at(2))
    assert push([a, b, c]) == {
        "$push": {"activity": {"$each": [b, c, a]}},
        "$inc": {"activityCount": 3, "activityEmbedded": 3},
    }


def test_a_bucket_holds_its_entries_newest_first_with_their_bounds_and_kinds():
    oid = ObjectId()
    entries = [
        entry("NOTE", at=at(2)),
        entry("ORDER_PLACED", at=at(9)),
        entry("NOTE", at=at(0)),
        entry("NOTE", at=at(5)),
    ]
    made = bucket_of(SHOP, oid, entries)
    assert isinstance(made["_id"], ObjectId)
    assert without_id(made) == {
        "shopId": SHOP,
        "contactId": oid,
        "entries": [entries[1], entries[3], entries[0], entries[2]],
        "count": 4,
        "kindCounts": {"ORDER_PLACED": 1, "NOTE": 3},
        "maxAt": at(9),
        "maxId": entries[1]["_id"],
        "minAt": at(0),
        "minId": entries[2]["_id"],
        "createdAt": NOW,
    }
    assert bucket_of(SHOP, oid, entries)["_id"] != made["_id"]


def test_updates_merge_operator_by_operator_and_the_later_field_wins():
    first = {"$set": {"name": "Ann", "city": "Bonn"}, "$inc": {"activityCount": 1}}
    second = {"$set": {"city": "Köln"}, "$push": {"activity": {"$each": []}}}
    third = {"$inc": {"orderCount": 2}}
    assert merge_updates(first, second, third) == {
        "$set": {"name": "Ann", "city": "Köln"},
        "$inc": {"activityCount": 1, "orderCount": 2},
        "$push": {"activity": {"$each": []}},
    }
    assert first == {"$set": {"name": "Ann", "city": "Bonn"}, "$inc": {"activityCount": 1}}
    assert merge_updates() == {}


# -- in_transaction ------------------------------------------------------------


async def test_a_transaction_answers_what_its_work_returns_and_its_writes_see_each_other(database):
    async def work(session: Any) -> int:
        await database.contacts.insert_one({"_id": "t1", "shopId": SHOP, "n": 1}, session=session)
        seen = await database.contacts.find_one({"_id": "t1"}, session=session)
        return seen["n"] + 41

    assert await in_transaction(database, work) == 42
    assert await database.contacts.find_one({"_id": "t1"}) == {"_id": "t1", "shopId": SHOP, "n": 1}


async def test_a_transaction_whose_work_fails_stores_nothing(database):
    async def work(session: Any) -> None:
        await database.contacts.insert_one({"_id": "t2", "shopId": SHOP}, session=session)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await in_transaction(database, work)
    assert await database.contacts.find_one({"_id": "t2"}) is None


async def test_a_transaction_that_fails_transiently_runs_its_work_again(database):
    runs = []

    async def work(session: Any) -> str:
        runs.append(1)
        await database.contacts.insert_one(
            {"_id": f"t3-{len(runs)}", "shopId": SHOP}, session=session
        )
        if len(runs) == 1:
            error = PyMongoError("write conflict")
            error._add_error_label("TransientTransactionError")
            raise error
        return "done"

    assert await in_transaction(database, work) == "done"
    assert len(runs) == 2
    stored = await database.contacts.find({"shopId": SHOP}).to_list()
    assert [doc["_id"] for doc in stored] == ["t3-2"]


# -- spill: the bound -----------------------------------------------------------


async def test_199_embedded_entries_stay_in_the_contact(database):
    entries = log_of(SPILL_AT - 1)
    oid = await stored_contact(database, entries)
    before = await contact_doc(database, oid)
    await spill(database, oid)
    assert await contact_doc(database, oid) == before
    assert await buckets(database, oid) == []


async def test_the_200th_entry_moves_the_oldest_100_into_one_bucket(database):
    entries = log_of(SPILL_AT)
    oid = await stored_contact(database, entries)
    await spill(database, oid)
    doc = await contact_doc(database, oid)
    assert doc == {
        "_id": oid,
        "shopId": SHOP,
        "activity": entries[BUCKET_SIZE:],
        "activityCount": SPILL_AT,
        "activityEmbedded": EMBEDDED_KEEP,
        "activityArchived": BUCKET_SIZE,
        "activityArchivedKinds": dict(Counter(e["kind"] for e in entries[:BUCKET_SIZE])),
        "activityArchivedAt": at(BUCKET_SIZE - 1),
    }
    [only] = await buckets(database, oid)
    assert without_id(only) == expected_bucket(oid, entries[:BUCKET_SIZE])


async def test_a_contact_said_to_hold_200_entries_but_holding_199_keeps_them(database):
    oid = await stored_contact(database, log_of(SPILL_AT - 1))
    before = await contact_doc(database, oid)
    await spill_overflow(database, SHOP, {**before, "activityEmbedded": SPILL_AT})
    assert await contact_doc(database, oid) == before
    assert await buckets(database, oid) == []


async def test_a_contact_said_to_hold_199_entries_is_not_read(database):
    oid = await stored_contact(database, log_of(SPILL_AT))
    before = await contact_doc(database, oid)
    await spill_overflow(database, SHOP, {**before, "activityEmbedded": SPILL_AT - 1})
    await spill_overflow(database, SHOP, {"_id": oid})
    assert await contact_doc(database, oid) == before


async def test_no_contact_or_a_contact_without_a_log_is_left_quietly(database, caplog):
    caplog.set_level(logging.WARNING, logger="contactgraph")
    await spill_overflow(database, SHOP, None)
    missing = ObjectId()
    await spill_overflow(database, SHOP, {"_id": missing, "activityEmbedded": SPILL_AT})
    bare = {"_id": ObjectId(), "shopId": SHOP, "activityEmbedded": SPILL_AT}
    await database.contacts.insert_one(bare)
    await spill_overflow(database, SHOP, bare)
    assert await contact_doc(database, bare["_id"]) == bare
    assert await database.activity_archive.count_documents({}) == 0
    assert caplog.records == []


async def test_another_shops_spill_moves_nothing(database):
    oid = await stored_contact(database, log_of(SPILL_AT))
    before = await contact_doc(database, oid)
    await spill_overflow(database, "other-shop", before)
    assert await contact_doc(database, oid) == before
    assert await buckets(database, oid) == []


# -- spill: how much moves ------------------------------------------------------


async def test_299_entries_move_one_whole_bucket_and_keep_199(database):
    entries = log_of(299)
    oid = await stored_contact(database, entries)
    await spill(database, oid)
    doc = await contact_doc(database, oid)
    assert doc["activity"] == entries[BUCKET_SIZE:]
    assert (doc["activityEmbedded"], doc["activityArchived"], doc["activityCount"]) == (
        199,
        100,
        299,
    )
    assert [without_id(b) for b in await buckets(database, oid)] == [
        expected_bucket(oid, entries[:BUCKET_SIZE])
    ]


async def test_300_entries_move_two_buckets_in_one_transaction(database, monkeypatch):
    entries = log_of(300)
    oid = await stored_contact(database, entries)
    archived_after = await count_transactions(database, monkeypatch, oid)
    await spill(database, oid)
    doc = await contact_doc(database, oid)
    assert doc["activity"] == entries[200:]
    assert (doc["activityEmbedded"], doc["activityArchived"], doc["activityCount"]) == (
        100,
        200,
        300,
    )
    assert doc["activityArchivedAt"] == at(199)
    assert [without_id(b) for b in await buckets(database, oid)] == [
        expected_bucket(oid, entries[:100]),
        expected_bucket(oid, entries[100:200]),
    ]
    assert archived_after == [200, 200]


async def count_transactions(
    database: Any, monkeypatch: pytest.MonkeyPatch, oid: ObjectId
) -> list[int]:
    """After each spill transaction (the last finds nothing to move), the contact's archived count."""
    seen: list[int] = []
    real = activity.in_transaction

    async def counted(db: Any, work: Any) -> Any:
        try:
            return await real(db, work)
        finally:
            seen.append((await contact_doc(database, oid)).get("activityArchived", 0))

    monkeypatch.setattr(activity, "in_transaction", counted)
    return seen


async def test_a_long_log_moves_at_most_1000_entries_per_transaction(database, monkeypatch):
    entries = log_of(1250)
    oid = await stored_contact(database, entries)
    archived_after = await count_transactions(database, monkeypatch, oid)
    await spill(database, oid)
    doc = await contact_doc(database, oid)
    assert archived_after == [1000, 1100, 1100]
    assert doc["activity"] == entries[1100:]
    assert (doc["activityEmbedded"], doc["activityArchived"], doc["activityCount"]) == (
        150,
        1100,
        1250,
    )
    assert doc["activityArchivedKinds"] == dict(Counter(e["kind"] for e in entries[:1100]))
    assert doc["activityArchivedAt"] == at(1099)
    stored = await buckets(database, oid)
    assert [without_id(b) for b in stored] == [
        expected_bucket(oid, entries[i : i + 100]) for i in range(0, 1100, 100)
    ]


async def test_the_oldest_entries_move_by_time_not_by_where_they_were_written(database):
    """A late entry (an order reported a week on) was appended last but is the oldest."""
    entries = log_of(197, start=10)
    late = entry("ORDER_PLACED", at=at(0))
    # Two entries of the same moment, the 100th and 101st oldest: the lower id is the older.
    tie_at = at(107) + dt.timedelta(milliseconds=500)
    tie_low, tie_high = entry("NOTE", at=tie_at), entry("NOTE", at=tie_at)
    assert tie_low["_id"] < tie_high["_id"]
    written = [tie_high, *entries[:50], tie_low, *entries[50:], late]
    assert len(written) == SPILL_AT
    oid = await stored_contact(database, written)
    await spill(database, oid)
    doc = await contact_doc(database, oid)
    assert doc["activity"] == [tie_high, *entries[98:]]
    assert doc["activityArchivedAt"] == tie_at
    [only] = await buckets(database, oid)
    assert without_id(only) == expected_bucket(oid, [late, *entries[:98], tie_low])
    assert only["entries"][0] == tie_low and only["entries"][-1] == late


# -- spill: counters -------------------------------------------------------------


async def test_a_spill_adds_to_the_archived_counters_and_keeps_a_newer_archived_time(database):
    entries = log_of(SPILL_AT)
    newer = at(5000)
    oid = await stored_contact(
        database,
        entries,
        activityArchived=100,
        activityArchivedKinds={"NOTE": 60, "MESSAGE_SENT": 40},
        activityArchivedAt=newer,
        activityCount=300,
    )
    await spill(database, oid)
    doc = await contact_doc(database, oid)
    moved = Counter(e["kind"] for e in entries[:BUCKET_SIZE])
    assert doc["activityArchived"] == 200
    assert doc["activityArchivedKinds"] == {
        "NOTE": 60 + moved["NOTE"],
        "MESSAGE_SENT": 40,
        "ORDER_PLACED": moved["ORDER_PLACED"],
        "FORM_SUBMITTED": moved["FORM_SUBMITTED"],
    }
    assert doc["activityArchivedAt"] == newer
    assert (doc["activityCount"], doc["activityEmbedded"]) == (300, EMBEDDED_KEEP)


async def test_a_spill_moves_an_older_archived_time_up_to_its_newest_entry(database):
    entries = log_of(SPILL_AT, start=100)
    oid = await stored_contact(database, entries, activityArchivedAt=at(3))
    await spill(database, oid)
    assert (await contact_doc(database, oid))["activityArchivedAt"] == at(199)


# -- spill: failures and races --------------------------------------------------


class _Proxy:
    """Stands in for an object, answering some attributes itself."""

    def __init__(self, real: Any, **own: Any) -> None:
        self._real = real
        self.__dict__.update(own)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_a_spill_whose_buckets_cannot_be_stored_leaves_every_entry_embedded(database, caplog):
    caplog.set_level(logging.WARNING, logger="contactgraph")
    oid = await stored_contact(database, log_of(SPILL_AT))
    before = await contact_doc(database, oid)

    async def insert_then_fail(documents: Any, session: Any = None) -> None:
        await database.activity_archive.insert_many(documents, session=session)
        raise OperationFailure("disk full", code=14031)

    failing = _Proxy(
        database, activity_archive=_Proxy(database.activity_archive, insert_many=insert_then_fail)
    )
    await spill_overflow(failing, SHOP, before)
    assert await contact_doc(database, oid) == before
    assert await buckets(database, oid) == []
    [record] = caplog.records
    assert (record.name, record.levelno) == ("contactgraph", logging.WARNING)
    assert record.getMessage() == f"activity of contact {oid} not archived this time"
    assert record.exc_info is not None and isinstance(record.exc_info[1], OperationFailure)
    # The next write tries again.
    await spill(database, oid)
    assert (await contact_doc(database, oid))["activityEmbedded"] == EMBEDDED_KEEP


def racing(database: Any, races: int, pauses: list[float], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The database as seen while another writer changes the array `races` times between read and write."""
    left = [races]

    class Result:
        modified_count = 0

    async def update_one(*args: Any, **kwargs: Any) -> Any:
        if left[0]:
            left[0] -= 1
            return Result()
        return await database.contacts.update_one(*args, **kwargs)

    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(activity, "asyncio", _Proxy(asyncio, sleep=sleep))
    return _Proxy(database, contacts=_Proxy(database.contacts, update_one=update_one))


async def test_a_spill_that_races_reads_again_up_to_its_last_attempt(database, monkeypatch):
    entries = log_of(SPILL_AT)
    oid = await stored_contact(database, entries)
    pauses: list[float] = []
    await spill_overflow(
        racing(database, TRANSACTION_ATTEMPTS - 1, pauses, monkeypatch),
        SHOP,
        {
            "_id": oid,
            "activityEmbedded": SPILL_AT,
        },
    )
    doc = await contact_doc(database, oid)
    assert doc["activity"] == entries[BUCKET_SIZE:]
    assert doc["activityArchived"] == BUCKET_SIZE
    assert len(await buckets(database, oid)) == 1
    assert len(pauses) == TRANSACTION_ATTEMPTS - 1 == 11
    # A short random pause, so two racing writers do not meet again at once.
    assert all(0 <= p <= 0.005 for p in pauses) and len(set(pauses)) > 1


async def test_a_spill_that_races_on_every_attempt_gives_up_and_moves_nothing(
    database, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING, logger="contactgraph")
    oid = await stored_contact(database, log_of(SPILL_AT))
    before = await contact_doc(database, oid)
    pauses: list[float] = []
    await spill_overflow(racing(database, TRANSACTION_ATTEMPTS, pauses, monkeypatch), SHOP, before)
    assert await contact_doc(database, oid) == before
    assert await buckets(database, oid) == []
    assert len(pauses) == 12
    assert caplog.records == []


async def test_a_note_deleted_and_another_added_while_a_spill_reads_are_both_seen(database):
    """The array changes between the spill's read and its write, its size alike: it reads again."""
    entries = log_of(SPILL_AT)
    oid = await stored_contact(database, entries)
    added = entry("NOTE", text="added meanwhile", at=at(500))
    reads: list[int] = []

    class Rows:
        def __init__(self, cursor: Any) -> None:
            self.cursor = cursor

        async def to_list(self) -> list[dict[str, Any]]:
            rows = await self.cursor.to_list()
            reads.append(len(rows))
            if len(reads) == 1:
                await database.contacts.update_one(
                    {"_id": oid}, {"$pull": {"activity": {"_id": entries[0]["_id"]}}}
                )
                await database.contacts.update_one({"_id": oid}, {"$push": {"activity": added}})
            return rows

    async def aggregate(*args: Any, **kwargs: Any) -> Rows:
        return Rows(await database.contacts.aggregate(*args, **kwargs))

    meanwhile = _Proxy(database, contacts=_Proxy(database.contacts, aggregate=aggregate))
    await spill_overflow(meanwhile, SHOP, await contact_doc(database, oid))
    doc = await contact_doc(database, oid)
    assert doc["activity"] == [*entries[BUCKET_SIZE + 1 :], added]
    assert (doc["activityEmbedded"], doc["activityArchived"]) == (EMBEDDED_KEEP, BUCKET_SIZE)
    [only] = await buckets(database, oid)
    assert without_id(only) == expected_bucket(oid, entries[1 : BUCKET_SIZE + 1])
    assert len(reads) >= 2
