"""Reads of the activity log: pages newest first across the embedded entries and the archive.

The order is (at desc, _id desc) everywhere. The embedded array is stored
in the order entries were written (appends only, see resolvers/activity.py),
so it is ordered here, on the server, before a page is cut from it.
Entries usually reach the archive oldest first, but a late event with an
old `at` can sit in the embedded array while newer entries are already
archived, so a page is always a merge of both sides by that key. See
resolvers/activity.py for the storage layout and its counters.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from strawberry.dataloader import DataLoader

from loaders.mongo import Database, Doc

Key = tuple[dt.datetime, ObjectId]
CURSOR_FIELD = "activity"


@dataclass(frozen=True)
class ActivityQuery:
    """One page of one contact's log: `after` is the (at, _id) of the last entry already seen."""

    contact_id: ObjectId
    first: int
    after: Key | None = None
    kinds: tuple[str, ...] | None = None  # None: every kind


@dataclass
class ActivityPage:
    entries: list[Doc]
    has_next: bool
    has_previous: bool
    total_count: int  # entries of the requested kinds over all pages


def _key(entry: Doc) -> Key:
    return entry["at"], entry["_id"]


def _before(entry: Doc, after: Key | None) -> bool:
    return after is None or _key(entry) < after


def _kind_ok(entry: Doc, kinds: tuple[str, ...] | None) -> bool:
    return kinds is None or entry.get("kind") in kinds


def newest_first(array: Any) -> Doc:
    """The aggregation expression ordering a stored log array newest first."""
    return {"$sortArray": {"input": {"$ifNull": [array, []]}, "sortBy": {"at": -1, "_id": -1}}}


def _window_pipeline(shop_id: str, ids: list[ObjectId], query: ActivityQuery) -> list[Doc]:
    """Per contact: the first+1 embedded entries of the page, and the counts for totalCount."""
    array = {"$ifNull": ["$activity", []]}
    kind_cond = {"$in": ["$$e.kind", list(query.kinds)]} if query.kinds is not None else None
    matching: Any = (
        array if kind_cond is None else {"$filter": {"input": array, "as": "e", "cond": kind_cond}}
    )
    conds: list[Any] = [kind_cond] if kind_cond is not None else []
    if query.after is not None:
        at, oid = query.after
        conds.append(
            {
                "$or": [
                    {"$lt": ["$$e.at", at]},
                    {"$and": [{"$eq": ["$$e.at", at]}, {"$lt": ["$$e._id", oid]}]},
                ]
            }
        )
    candidates: Any = array
    if conds:
        cond = conds[0] if len(conds) == 1 else {"$and": conds}
        candidates = {"$filter": {"input": array, "as": "e", "cond": cond}}
    # Filtered first: only the entries that may be on the page are sorted.
    candidates = newest_first(candidates)
    return [
        {"$match": {"shopId": shop_id, "_id": {"$in": ids}}},
        {
            "$project": {
                "embedded": {"$size": matching},
                "window": {"$slice": [candidates, query.first + 1]},
                "archived": "$activityArchived",
                "archivedKinds": "$activityArchivedKinds",
                "archivedAt": "$activityArchivedAt",
            }
        },
    ]


def _archived_count(row: Doc, kinds: tuple[str, ...] | None) -> int:
    if kinds is None:
        return int(row.get("archived") or 0)
    by_kind = row.get("archivedKinds") or {}
    return sum(int(by_kind.get(k) or 0) for k in kinds)


def _needs_archive(row: Doc, query: ActivityQuery) -> bool:
    if _archived_count(row, query.kinds) <= 0:
        return False
    window = row["window"]
    newest_archived = row.get("archivedAt")
    if len(window) <= query.first or newest_archived is None:
        return True
    # The embedded window is complete; archived entries could only come
    # before its last entry if one is at least as new.
    return bool(newest_archived >= window[query.first]["at"])


# A bucket's bounds without its entries; an inclusion projection, so the
# entries are never read into the reply.
_BOUNDS = {
    "contactId": 1,
    "maxAt": 1,
    "maxId": 1,
    "minAt": 1,
    "minId": 1,
    "count": 1,
    "kindCounts": 1,
}


def _bucket_count(bucket: Doc, kinds: tuple[str, ...] | None) -> int:
    if kinds is None:
        return int(bucket.get("count") or 0)
    return sum(int((bucket.get("kindCounts") or {}).get(k) or 0) for k in kinds)


@dataclass
class _Merge:
    """The archive side of one page, bucket by bucket, newest bucket first."""

    query: ActivityQuery
    found: dict[ObjectId, Doc]
    buckets: list[Doc] = field(default_factory=list)

    def threshold(self) -> Key | None:
        """The key of the (first+1)-th entry so far: nothing older can enter the page."""
        if len(self.found) <= self.query.first:
            return None
        return sorted((_key(e) for e in self.found.values()), reverse=True)[self.query.first]

    def prune(self) -> None:
        limit = self.threshold()
        if limit is not None:
            self.buckets = [b for b in self.buckets if (b["maxAt"], b["maxId"]) >= limit]

    def next_buckets(self) -> list[Doc]:
        """Enough of the newest remaining buckets to fill the page, were they all to count."""
        chosen: list[Doc] = []
        have = len(self.found)
        while self.buckets and (not chosen or have <= self.query.first):
            bucket = self.buckets.pop(0)
            chosen.append(bucket)
            have += _bucket_count(bucket, self.query.kinds)
        return chosen

    def add(self, entries: list[Doc]) -> None:
        for entry in entries:
            if _kind_ok(entry, self.query.kinds) and _before(entry, self.query.after):
                self.found[entry["_id"]] = entry


async def _merge_archive(
    database: Database, shop_id: str, query: ActivityQuery, rows: dict[ObjectId, Doc]
) -> None:
    """Extend each row's window with archived entries, for every contact of one query shape.

    One query reads the bucket bounds of all these contacts, then each
    round reads the entries of the buckets that could still hold entries
    of some page (usually one round, two when a bucket straddles a page).
    """
    # The bounds are few and small: they are filtered and ordered here, which
    # costs the server nothing beyond reading them.
    bounds = await database.activity_archive.find(
        {"shopId": shop_id, "contactId": {"$in": list(rows)}}, _BOUNDS, batch_size=10_000
    ).to_list()
    bounds.sort(key=lambda b: (b["maxAt"], b["maxId"]), reverse=True)
    merges: dict[ObjectId, _Merge] = {
        contact_id: _Merge(query, {e["_id"]: e for e in row["window"]})
        for contact_id, row in rows.items()
    }
    for bucket in bounds:
        # Only buckets with entries of the kinds asked for, older than the cursor.
        if _bucket_count(bucket, query.kinds) > 0 and (
            query.after is None or (bucket["minAt"], bucket["minId"]) < query.after
        ):
            merges[bucket["contactId"]].buckets.append(bucket)
    while True:
        wanted: list[ObjectId] = []
        for merge in merges.values():
            merge.prune()
            wanted.extend(b["_id"] for b in merge.next_buckets())
        if not wanted:
            break
        # `_id` first: the embedded server plans by the first indexed field,
        # and the _id index is the one that answers this.
        async for bucket in database.activity_archive.find(
            {"_id": {"$in": wanted}, "shopId": shop_id}, {"contactId": 1, "entries": 1}
        ):
            merges[bucket["contactId"]].add(bucket.get("entries") or [])
    for contact_id, merge in merges.items():
        rows[contact_id]["window"] = sorted(merge.found.values(), key=_key, reverse=True)[
            : query.first + 1
        ]


async def load_pages(
    database: Database, shop_id: str, queries: Sequence[ActivityQuery]
) -> list[ActivityPage | None]:
    """Pages for many (contact, arguments) at once: one aggregation per distinct arguments.

    None for a contact that does not exist in the shop.
    """
    shapes: dict[tuple[Any, ...], list[ActivityQuery]] = defaultdict(list)
    for query in queries:
        shapes[(query.first, query.after, query.kinds)].append(query)
    pages: dict[ActivityQuery, ActivityPage] = {}
    for group in shapes.values():
        shape = group[0]
        ids = list(dict.fromkeys(q.contact_id for q in group))
        rows = {
            row["_id"]: row
            async for row in await database.contacts.aggregate(
                _window_pipeline(shop_id, ids, shape)
            )
        }
        archive_rows = {cid: row for cid, row in rows.items() if _needs_archive(row, shape)}
        if archive_rows:
            await _merge_archive(database, shop_id, shape, archive_rows)
        for query in group:
            row = rows.get(query.contact_id)
            if row is None:
                continue
            window = row["window"]
            pages[query] = ActivityPage(
                entries=window[: query.first],
                has_next=len(window) > query.first,
                has_previous=query.after is not None,
                total_count=int(row["embedded"]) + _archived_count(row, query.kinds),
            )
    return [pages.get(q) for q in queries]


class ActivityPageByQueryLoader(DataLoader[ActivityQuery, ActivityPage | None]):
    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(queries: list[ActivityQuery]) -> list[ActivityPage | None]:
            return await load_pages(database, shop_id, queries)

        super().__init__(load_fn=load)


@dataclass(frozen=True)
class FoundEntry:
    contact_id: ObjectId
    entry: Doc


# An entry's id and the contact its global id names (None in ids issued before
# they named one). Entries have no index of their own: the contact leads to them.
EntryKey = tuple[ObjectId, ObjectId | None]


async def find_entries(
    database: Database, shop_id: str, keys: Sequence[EntryKey]
) -> list[FoundEntry | None]:
    """Entries by id wherever they are, embedded or archived, found through their contacts."""
    wanted = {entry_id for entry_id, _ in keys}
    owners = list({owner for _, owner in keys if owner is not None})
    found: dict[ObjectId, FoundEntry] = {}
    if owners:
        async for doc in database.contacts.find(
            # `_id` first: the embedded server then looks it up by id.
            {"_id": {"$in": owners}, "shopId": shop_id, "activity._id": {"$in": list(wanted)}},
            {"activity": 1},
        ):
            for entry in doc.get("activity") or []:
                if entry["_id"] in wanted:
                    found[entry["_id"]] = FoundEntry(doc["_id"], entry)
    missing = [i for i in wanted if i not in found]
    if missing:
        # Read after the contacts: an entry archived in between is found here,
        # and so is an archived one whose contact was merged into another (the
        # archive has an index of its entries' ids).
        async for bucket in database.activity_archive.find(
            {"shopId": shop_id, "entries._id": {"$in": missing}}, {"contactId": 1, "entries": 1}
        ):
            for entry in bucket.get("entries") or []:
                if entry["_id"] in wanted:
                    found[entry["_id"]] = FoundEntry(bucket["contactId"], entry)
    return [found.get(entry_id) for entry_id, _ in keys]


class ActivityEntryByIdLoader(DataLoader[EntryKey, FoundEntry | None]):
    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(keys: list[EntryKey]) -> list[FoundEntry | None]:
            return await find_entries(database, shop_id, keys)

        super().__init__(load_fn=load)
