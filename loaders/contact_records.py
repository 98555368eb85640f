"""A contact's records newest first, a page at a time, and how many there are.

Orders and subscription contracts are both kept per contact and shown
newest first, by (sort field desc, _id desc), which an index (shopId,
contactId, field -1, _id -1) serves. First pages of many contacts (a list
of contacts with their latest orders or their Recurring tab) are one
aggregation per batch: `$topN` per contact, so the cost does not grow with
the number of contacts.

The status condition sits in a `$match` stage of its own after the indexed
(shopId, contactId) one: real MongoDB merges the two, while the embedded
server only uses the index when the first stage holds nothing else (with
status beside it, it scans the collection: 1.7 s instead of 0.3 s for a
page of 50 contacts over 4,000 orders).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bson import ObjectId
from strawberry.dataloader import DataLoader

from loaders.keyset import Page, PageRequest, _seek, decode_cursor
from loaders.mongo import Database, Doc


@dataclass(frozen=True)
class Records:
    """One kind of record a contact has: where it is stored and what orders it."""

    collection: str
    sort_field: str
    default_page: int
    # Asked for all together, these statuses need no condition (None: always one).
    all_statuses: tuple[str, ...] | None = None

    def stages(
        self, shop_id: str, contact_ids: Sequence[ObjectId], statuses: Sequence[str]
    ) -> list[Doc]:
        """The `$match` stages selecting these contacts' records in these statuses."""
        ids = list(contact_ids)
        stages: list[Doc] = [
            {"$match": {"shopId": shop_id, "contactId": ids[0] if len(ids) == 1 else {"$in": ids}}}
        ]
        if self.all_statuses is None or set(statuses) != set(self.all_statuses):
            stages.append({"$match": {"status": {"$in": list(statuses)}}})
        return stages


@dataclass(frozen=True)
class PageKey:
    """One contact's page: which contact, how many, after which cursor, which statuses."""

    contact_id: ObjectId
    first: int
    after: str | None
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class CountKey:
    contact_id: ObjectId
    statuses: tuple[str, ...]


async def first_pages(
    database: Database,
    records: Records,
    shop_id: str,
    first: int,
    statuses: tuple[str, ...],
    contact_ids: list[ObjectId],
) -> dict[ObjectId, Page]:
    """The first page of every one of these contacts in one aggregation."""
    field = records.sort_field
    rows = await (
        await database.db[records.collection].aggregate(
            [
                *records.stages(shop_id, contact_ids, statuses),
                {
                    "$group": {
                        "_id": "$contactId",
                        "rows": {
                            "$topN": {
                                "n": first + 1,  # one more tells whether a next page exists
                                "sortBy": {field: -1, "_id": -1},
                                "output": "$$ROOT",
                            }
                        },
                    }
                },
            ],
            # One group per contact, all in the first reply: no getMore however many contacts.
            batchSize=len(contact_ids) + 1,
        )
    ).to_list()
    found = {row["_id"]: row["rows"] for row in rows}
    pages = {}
    for contact_id in contact_ids:
        mine = found.get(contact_id, [])
        pages[contact_id] = Page(
            mine[:first], has_next=len(mine) > first, has_previous=False, field=field
        )
    return pages


async def page_after(database: Database, records: Records, shop_id: str, key: PageKey) -> Page:
    """One page of one contact's records after a cursor: keyset seek, sort, limit."""
    field = records.sort_field
    size, _ = PageRequest(first=key.first).size(records.default_page)
    stages = records.stages(shop_id, [key.contact_id], key.statuses)
    if key.after is not None:
        value, oid = decode_cursor(key.after, field)
        stages.append({"$match": _seek(field, value, oid, ascending=False)})
    stages += [{"$sort": {field: -1, "_id": -1}}, {"$limit": size + 1}]
    # Room for one row more than the limit: a first batch the rows fill exactly
    # leaves the cursor open, and closing it would cost a getMore per full page.
    rows = await (
        await database.db[records.collection].aggregate(stages, batchSize=size + 2)
    ).to_list()
    return Page(
        rows[:size], has_next=len(rows) > size, has_previous=key.after is not None, field=field
    )


class PagesByContactIdLoader(DataLoader[PageKey, Page]):
    """Pages of contacts' records; first pages of a batch share one aggregation per (size, statuses)."""

    def __init__(self, database: Database, shop_id: str, records: Records) -> None:
        async def load(keys: list[PageKey]) -> list[Page]:
            groups: dict[tuple[int, tuple[str, ...]], list[ObjectId]] = defaultdict(list)
            for key in keys:
                if key.after is None:
                    groups[(key.first, key.statuses)].append(key.contact_id)
            later = [key for key in keys if key.after is not None]
            grouped, paged = await asyncio.gather(
                asyncio.gather(
                    *[
                        first_pages(
                            database, records, shop_id, first, statuses, list(dict.fromkeys(ids))
                        )
                        for (first, statuses), ids in groups.items()
                    ]
                ),
                asyncio.gather(*[page_after(database, records, shop_id, key) for key in later]),
            )
            pages: dict[PageKey, Page] = dict(zip(later, paged, strict=True))
            for (first, statuses), found in zip(groups, grouped, strict=True):
                for contact_id, page in found.items():
                    pages[PageKey(contact_id, first, None, statuses)] = page
            return [pages[key] for key in keys]

        super().__init__(load_fn=load)


class CountByContactIdLoader(DataLoader[CountKey, int]):
    """How many records each contact has (totalCount), one aggregation per status set."""

    def __init__(self, database: Database, shop_id: str, records: Records) -> None:
        async def load(keys: list[CountKey]) -> list[int]:
            groups: dict[tuple[str, ...], list[ObjectId]] = defaultdict(list)
            for key in keys:
                groups[key.statuses].append(key.contact_id)

            async def count(statuses: tuple[str, ...], ids: list[ObjectId]) -> dict[CountKey, int]:
                unique = list(dict.fromkeys(ids))
                rows = await (
                    await database.db[records.collection].aggregate(
                        [
                            *records.stages(shop_id, unique, statuses),
                            {"$group": {"_id": "$contactId", "n": {"$sum": 1}}},
                        ],
                        batchSize=len(unique) + 1,
                    )
                ).to_list()
                return {CountKey(row["_id"], statuses): row["n"] for row in rows}

            counts: dict[CountKey, int] = {}
            for found in await asyncio.gather(*[count(s, ids) for s, ids in groups.items()]):
                counts.update(found)
            return [counts.get(key, 0) for key in keys]

        super().__init__(load_fn=load)


class RecordByIdLoader(DataLoader[ObjectId, Doc | None]):
    def __init__(self, database: Database, shop_id: str, records: Records) -> None:
        async def load(ids: list[ObjectId]) -> list[Doc | None]:
            rows = (
                await database.db[records.collection]
                .find({"shopId": shop_id, "_id": {"$in": list(ids)}}, batch_size=len(ids) + 1)
                .to_list()
            )
            found = {row["_id"]: row for row in rows}
            return [found.get(i) for i in ids]

        super().__init__(load_fn=load)
