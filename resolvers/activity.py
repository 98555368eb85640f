"""Entries of a contact's activity log, the update that records them, and the archive.

The newest entries live in the contact document (`activity`) so a contact
page reads in one go. Older entries move to
`activity_archive` in buckets so that no document ever approaches MongoDB's
16 MB limit, however long a contact's history grows.

Why these bounds: a note is at most 5,000 characters (at most 20 KB of
UTF-8), most entries are ~100 bytes. Between `EMBEDDED_KEEP` (100) and
`SPILL_AT` (200) embedded entries, a contact document stays around 10-20 KB
typically and under 4 MB even if every entry were a maximal note, while the
contact page's first two pages of 50 entries still come from the document
alone. Every write to a contact rewrites its document (and the embedded
server also re-indexes the array), so a smaller array makes every order,
note and label change cheaper. Spilling whole buckets of `BUCKET_SIZE` (100)
keeps the archive at one document per 100 entries, and the slack between
100 and 200 means a spill happens once per 100 new entries, not on every write.

The embedded array is kept in the order entries were written, not sorted:
every write appends (`push`), which MongoDB records in its oplog and change
events as the new positions alone (`activity.N`). Keeping it sorted would
take `$sort` (or `$position`) on every push, and either makes MongoDB log
the whole array, 10-20 KB, into the oplog and every change event, for each
note, order or label change. Entries mostly arrive in time order, but a
late one (an order placed last week, reported now) does not, so readers
order the array by (at, _id) themselves (`$sortArray` on the server, at
most SPILL_AT entries) and never rely on positions.

Counters on the contact, all changed in the same write as the entries they count:
- `activityCount`: entries in the log, embedded and archived (deleted notes leave it);
- `activityEmbedded`: entries in the `activity` array (a cheap "is a spill due?");
- `activityArchived`, `activityArchivedKinds.<KIND>`: entries in the archive, in total and by kind;
- `activityArchivedAt`: the newest `at` ever archived, so a reader knows when the
  embedded entries alone answer a page.

An archive bucket: `{shopId, contactId, entries (newest first), count, kindCounts,
maxAt, maxId, minAt, minId, createdAt}`; the bounds only ever widen (a deleted
note leaves them), which keeps them safe for skipping buckets while paging.
Code that moves activity between contacts (merging) must keep these
counters and `contactId` on the buckets in step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bson import ObjectId
from pymongo.errors import PyMongoError

from resolvers.clock import now

log = logging.getLogger("contactgraph")

EMBEDDED_KEEP = 100
BUCKET_SIZE = 100
SPILL_AT = EMBEDDED_KEEP + BUCKET_SIZE
MAX_BUCKETS_PER_SPILL = 10
KINDS = (
    "CONTACT_CREATED",
    "DETAILS_UPDATED",
    "NOTE",
    "ORDER_PLACED",
    "ORDER_CANCELED",
    "DRAFT_ORDER_CREATED",
    "CONVERTED_TO_CUSTOMER",
    "MESSAGE_SENT",
    "FORM_SUBMITTED",
    "CONSENT_CHANGED",
    "LABELS_CHANGED",
    "CONTACTS_MERGED",
    "SUBSCRIPTION_STARTED",
    "SUBSCRIPTION_CHANGED",
    "SUBSCRIPTION_CANCEL_REQUESTED",
    "SUBSCRIPTION_ENDED",
)
TRANSACTION_ATTEMPTS = 12

T = TypeVar("T")


def entry(
    kind: str,
    *,
    text: str | None = None,
    author: str | None = None,
    order_id: ObjectId | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": ObjectId(), "kind": kind, "at": at or now()}
    if text is not None:
        doc["text"] = text
    if author is not None:
        doc["author"] = author
    if order_id is not None:
        doc["orderId"] = order_id
    return doc


def push(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Update operators that add entries to the log; merge them into the write's own update.

    A plain append (no `$sort`, `$position` or `$slice`), so MongoDB logs
    only the new entries: see the module's docstring.
    """
    return {
        "$push": {"activity": {"$each": sorted(entries, key=sort_key)}},
        "$inc": {"activityCount": len(entries), "activityEmbedded": len(entries)},
    }


def sort_key(item: dict[str, Any]) -> tuple[dt.datetime, ObjectId]:
    """The log's order, (at, _id); sort with reverse=True for newest first."""
    return item["at"], item["_id"]


async def in_transaction(database: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(session)` in one transaction, retried as MongoDB's transaction rules require.

    `ClientSession.with_transaction` runs the whole of `work` again (after a
    growing, jittered pause) whenever the transaction fails with the
    TransientTransactionError label: a write conflict under snapshot
    isolation, but also a connection dropped mid-transaction, which PyMongo
    raises as ConnectionFailure. A commit whose outcome is unknown
    (UnknownTransactionCommitResult) is retried as a commit, never reported
    as a failure when it may have happened. It gives up after 120 seconds.
    So `work` may run more than once: it must only write through `session`
    and compute its result afresh each time.
    """
    async with database.client.start_session() as session:
        return await session.with_transaction(work)


class _NothingToMove(Exception):
    pass


class _Raced(Exception):
    """The array is no longer as read: read again."""


def bucket_of(shop_id: str, contact_id: ObjectId, entries: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(entries, key=sort_key, reverse=True)
    kinds = Counter(e["kind"] for e in ordered)
    return {
        "_id": ObjectId(),
        "shopId": shop_id,
        "contactId": contact_id,
        "entries": ordered,
        "count": len(ordered),
        "kindCounts": dict(kinds),
        "maxAt": ordered[0]["at"],
        "maxId": ordered[0]["_id"],
        "minAt": ordered[-1]["at"],
        "minId": ordered[-1]["_id"],
        "createdAt": now(),
    }


def _oldest_to_move() -> dict[str, Any]:
    """The oldest embedded entries in whole buckets, as many as leave at least EMBEDDED_KEEP.

    At least one bucket (the caller checks the bound) and at most
    MAX_BUCKETS_PER_SPILL, so one transaction stays small however far a
    bulk write (an import, a failed earlier spill) pushed the array. Oldest first.
    """
    array = {"$ifNull": ["$activity", []]}
    over = {"$subtract": [{"$size": array}, EMBEDDED_KEEP]}
    whole = {"$subtract": [over, {"$mod": [over, BUCKET_SIZE]}]}
    count = {"$min": [{"$max": [whole, BUCKET_SIZE]}, MAX_BUCKETS_PER_SPILL * BUCKET_SIZE]}
    oldest_first = {"$sortArray": {"input": array, "sortBy": {"at": 1, "_id": 1}}}
    return {"$slice": [oldest_first, count]}


async def _spill_once(database: Any, shop_id: str, contact_id: ObjectId) -> bool:
    """Move the oldest embedded entries into new buckets of BUCKET_SIZE; False under the bound."""

    async def move(session: Any) -> None:
        rows = await (
            await database.contacts.aggregate(
                [
                    {"$match": {"shopId": shop_id, "_id": contact_id}},
                    {
                        "$project": {
                            "size": {"$size": {"$ifNull": ["$activity", []]}},
                            "tail": _oldest_to_move(),
                        }
                    },
                ],
                session=session,
            )
        ).to_list()
        if not rows or rows[0]["size"] < SPILL_AT:
            raise _NothingToMove
        size, tail = rows[0]["size"], rows[0]["tail"]
        kinds = Counter(e["kind"] for e in tail)
        moved = await database.contacts.update_one(
            # The array must be as read: the transaction's snapshot makes a
            # concurrent write a conflict, and its size pinned says the same
            # without relying on it.
            {
                "_id": contact_id,  # first: the embedded server then looks it up by id
                "shopId": shop_id,
                # A field's condition, not `$expr`: the embedded server scans every
                # contact for a top-level operator.
                "activity": {"$size": size},
            },
            {
                # By id: the array is in write order, so the oldest entries
                # need not sit together. Once per BUCKET_SIZE writes, MongoDB
                # logs the array that is left (EMBEDDED_KEEP entries or so).
                "$pull": {"activity": {"_id": {"$in": [e["_id"] for e in tail]}}},
                "$inc": {
                    "activityEmbedded": -len(tail),
                    "activityArchived": len(tail),
                    **{f"activityArchivedKinds.{k}": n for k, n in kinds.items()},
                },
                "$max": {"activityArchivedAt": max(e["at"] for e in tail)},
            },
            session=session,
        )
        if moved.modified_count != 1:
            raise _Raced
        await database.activity_archive.insert_many(
            [
                bucket_of(shop_id, contact_id, tail[i : i + BUCKET_SIZE])
                for i in range(0, len(tail), BUCKET_SIZE)
            ],
            session=session,
        )

    for _ in range(TRANSACTION_ATTEMPTS):
        try:
            await in_transaction(database, move)
            return True
        except _NothingToMove:
            return False
        except _Raced:
            await asyncio.sleep(random.uniform(0, 0.005))
    return False


async def spill_overflow(database: Any, shop_id: str, contact: dict[str, Any] | None) -> None:
    """Move the oldest embedded entries to `activity_archive` once the log passes its bound.

    Call after every write that pushed entries, with the contact as written
    (it needs `activityEmbedded`). Cheap when there is nothing to move. The
    due buckets move in a transaction (buckets inserted, exactly those entries
    pulled, counters changed), so two writers spilling at once never lose
    or duplicate an entry: the second one conflicts, reads again and finds
    nothing left to move. A spill that cannot finish leaves the entries
    embedded, where they stay readable; the next write tries again.
    """
    if contact is None or (contact.get("activityEmbedded") or 0) < SPILL_AT:
        return
    try:
        while await _spill_once(database, shop_id, contact["_id"]):
            pass
    except PyMongoError:
        log.warning("activity of contact %s not archived this time", contact["_id"], exc_info=True)


def merge_updates(*updates: dict[str, Any]) -> dict[str, Any]:
    """One update document out of several, operator by operator."""
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        for op, fields in update.items():
            merged.setdefault(op, {}).update(fields)
    return merged
