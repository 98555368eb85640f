"""Reads of orders: by id, a contact's order history a page at a time, and its size.

Order history is newest first, by (placedAt desc, _id desc), which the
index (shopId, contactId, placedAt -1, _id -1) serves; drafts have no
placedAt and come last. First pages of many contacts (a list of contacts
with their latest orders) are one aggregation per batch: `$topN` per
contact, so the cost does not grow with the number of contacts.

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

SORT_FIELD = "placedAt"
DEFAULT_PAGE = 20


def order_statuses(include_canceled: bool, include_drafts: bool) -> tuple[str, ...]:
    """The statuses an order history shows; canceled orders are hidden unless asked for."""
    statuses = ["OPEN", "FULFILLED"]
    if include_canceled:
        statuses.append("CANCELED")
    if include_drafts:
        statuses.append("DRAFT")
    return tuple(statuses)


@dataclass(frozen=True)
class OrdersKey:
    """One contact's order page: which contact, how many, after which cursor, which statuses."""

    contact_id: ObjectId
    first: int
    after: str | None
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class OrderCountKey:
    contact_id: ObjectId
    statuses: tuple[str, ...]


def history_stages(
    shop_id: str, contact_ids: Sequence[ObjectId], statuses: Sequence[str]
) -> list[Doc]:
    """The `$match` stages selecting these contacts' orders in these statuses (see above)."""
    ids = list(contact_ids)
    return [
        {"$match": {"shopId": shop_id, "contactId": ids[0] if len(ids) == 1 else {"$in": ids}}},
        {"$match": {"status": {"$in": list(statuses)}}},
    ]


async def _first_pages(
    database: Database,
    shop_id: str,
    first: int,
    statuses: tuple[str, ...],
    contact_ids: list[ObjectId],
) -> dict[ObjectId, Page]:
    """The first page of every contact's history in one aggregation."""
    rows = await (
        await database.orders.aggregate(
            [
                *history_stages(shop_id, contact_ids, statuses),
                {
                    "$group": {
                        "_id": "$contactId",
                        "rows": {
                            "$topN": {
                                "n": first + 1,  # one more tells whether a next page exists
                                "sortBy": {SORT_FIELD: -1, "_id": -1},
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
        orders = found.get(contact_id, [])
        pages[contact_id] = Page(
            orders[:first], has_next=len(orders) > first, has_previous=False, field=SORT_FIELD
        )
    return pages


async def order_page(database: Database, shop_id: str, key: OrdersKey) -> Page:
    """One page of one contact's history after a cursor: keyset seek, sort, limit."""
    size, _ = PageRequest(first=key.first).size(DEFAULT_PAGE)
    stages = history_stages(shop_id, [key.contact_id], key.statuses)
    if key.after is not None:
        value, oid = decode_cursor(key.after, SORT_FIELD)
        stages.append({"$match": _seek(SORT_FIELD, value, oid, ascending=False)})
    stages += [{"$sort": {SORT_FIELD: -1, "_id": -1}}, {"$limit": size + 1}]
    rows = await (await database.orders.aggregate(stages, batchSize=size + 1)).to_list()
    return Page(
        rows[:size], has_next=len(rows) > size, has_previous=key.after is not None, field=SORT_FIELD
    )


class OrdersByContactIdLoader(DataLoader[OrdersKey, Page]):
    """Pages of order history; first pages of a batch share one aggregation per (size, statuses)."""

    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(keys: list[OrdersKey]) -> list[Page]:
            groups: dict[tuple[int, tuple[str, ...]], list[ObjectId]] = defaultdict(list)
            for key in keys:
                if key.after is None:
                    groups[(key.first, key.statuses)].append(key.contact_id)
            later = [key for key in keys if key.after is not None]
            grouped, paged = await asyncio.gather(
                asyncio.gather(
                    *[
                        _first_pages(database, shop_id, first, statuses, list(dict.fromkeys(ids)))
                        for (first, statuses), ids in groups.items()
                    ]
                ),
                asyncio.gather(*[order_page(database, shop_id, key) for key in later]),
            )
            pages: dict[OrdersKey, Page] = dict(zip(later, paged, strict=True))
            for (first, statuses), found in zip(groups, grouped, strict=True):
                for contact_id, page in found.items():
                    pages[OrdersKey(contact_id, first, None, statuses)] = page
            return [pages[key] for key in keys]

        super().__init__(load_fn=load)


class OrderCountByContactIdLoader(DataLoader[OrderCountKey, int]):
    """How many orders each contact's history holds (totalCount), one aggregation per status set."""

    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(keys: list[OrderCountKey]) -> list[int]:
            groups: dict[tuple[str, ...], list[ObjectId]] = defaultdict(list)
            for key in keys:
                groups[key.statuses].append(key.contact_id)

            async def count(
                statuses: tuple[str, ...], ids: list[ObjectId]
            ) -> dict[OrderCountKey, int]:
                rows = await (
                    await database.orders.aggregate(
                        [
                            *history_stages(shop_id, list(dict.fromkeys(ids)), statuses),
                            {"$group": {"_id": "$contactId", "n": {"$sum": 1}}},
                        ],
                        batchSize=len(ids) + 1,
                    )
                ).to_list()
                return {OrderCountKey(row["_id"], statuses): row["n"] for row in rows}

            counts: dict[OrderCountKey, int] = {}
            for found in await asyncio.gather(*[count(s, ids) for s, ids in groups.items()]):
                counts.update(found)
            return [counts.get(key, 0) for key in keys]

        super().__init__(load_fn=load)


class OrderByIdLoader(DataLoader[ObjectId, Doc | None]):
    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(ids: list[ObjectId]) -> list[Doc | None]:
            rows = await database.orders.find(
                {"shopId": shop_id, "_id": {"$in": list(ids)}}, batch_size=len(ids) + 1
            ).to_list()
            found = {row["_id"]: row for row in rows}
            return [found.get(i) for i in ids]

        super().__init__(load_fn=load)
