"""Reads of subscription contracts: by id, a contact's contracts a page at a time, and their number.

A contact's contracts are newest first, by (startedAt desc, _id desc), which
the index (shopId, contactId, startedAt -1, _id -1) serves. First pages of
many contacts (a list of contacts with their Recurring tab) are one
aggregation per batch, `$topN` per contact, as for order history
(loaders/orders.py): the cost does not grow with the number of contacts.
The status condition sits in a `$match` stage of its own for the same
reason as there.
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

SORT_FIELD = "startedAt"
DEFAULT_PAGE = 20
ALL_STATUSES = ("ACTIVE", "PAUSED", "PAST_DUE", "CANCELED", "EXPIRED")


@dataclass(frozen=True)
class ContractsKey:
    """One contact's page of contracts: which contact, how many, after which cursor, which statuses."""

    contact_id: ObjectId
    first: int
    after: str | None
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class ContractCountKey:
    contact_id: ObjectId
    statuses: tuple[str, ...]


def _stages(shop_id: str, contact_ids: Sequence[ObjectId], statuses: Sequence[str]) -> list[Doc]:
    ids = list(contact_ids)
    stages: list[Doc] = [
        {"$match": {"shopId": shop_id, "contactId": ids[0] if len(ids) == 1 else {"$in": ids}}}
    ]
    if set(statuses) != set(ALL_STATUSES):
        stages.append({"$match": {"status": {"$in": list(statuses)}}})
    return stages


async def _first_pages(
    database: Database,
    shop_id: str,
    first: int,
    statuses: tuple[str, ...],
    contact_ids: list[ObjectId],
) -> dict[ObjectId, Page]:
    rows = await (
        await database.subscription_contracts.aggregate(
            [
                *_stages(shop_id, contact_ids, statuses),
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
            batchSize=len(contact_ids) + 1,
        )
    ).to_list()
    found = {row["_id"]: row["rows"] for row in rows}
    pages = {}
    for contact_id in contact_ids:
        contracts = found.get(contact_id, [])
        pages[contact_id] = Page(
            contracts[:first], has_next=len(contracts) > first, has_previous=False, field=SORT_FIELD
        )
    return pages


async def contract_page(database: Database, shop_id: str, key: ContractsKey) -> Page:
    """One page of one contact's contracts after a cursor: keyset seek, sort, limit."""
    size, _ = PageRequest(first=key.first).size(DEFAULT_PAGE)
    stages = _stages(shop_id, [key.contact_id], key.statuses)
    if key.after is not None:
        value, oid = decode_cursor(key.after, SORT_FIELD)
        stages.append({"$match": _seek(SORT_FIELD, value, oid, ascending=False)})
    stages += [{"$sort": {SORT_FIELD: -1, "_id": -1}}, {"$limit": size + 1}]
    rows = await (
        await database.subscription_contracts.aggregate(stages, batchSize=size + 1)
    ).to_list()
    return Page(
        rows[:size], has_next=len(rows) > size, has_previous=key.after is not None, field=SORT_FIELD
    )


class SubscriptionContractsByContactIdLoader(DataLoader[ContractsKey, Page]):
    """Pages of contacts' contracts; first pages of a batch share one aggregation per (size, statuses)."""

    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(keys: list[ContractsKey]) -> list[Page]:
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
                asyncio.gather(*[contract_page(database, shop_id, key) for key in later]),
            )
            pages: dict[ContractsKey, Page] = dict(zip(later, paged, strict=True))
            for (first, statuses), found in zip(groups, grouped, strict=True):
                for contact_id, page in found.items():
                    pages[ContractsKey(contact_id, first, None, statuses)] = page
            return [pages[key] for key in keys]

        super().__init__(load_fn=load)


class SubscriptionContractCountByContactIdLoader(DataLoader[ContractCountKey, int]):
    """How many contracts each contact has (totalCount), one aggregation per status set."""

    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(keys: list[ContractCountKey]) -> list[int]:
            groups: dict[tuple[str, ...], list[ObjectId]] = defaultdict(list)
            for key in keys:
                groups[key.statuses].append(key.contact_id)

            async def count(
                statuses: tuple[str, ...], ids: list[ObjectId]
            ) -> dict[ContractCountKey, int]:
                unique = list(dict.fromkeys(ids))
                rows = await (
                    await database.subscription_contracts.aggregate(
                        [
                            *_stages(shop_id, unique, statuses),
                            {"$group": {"_id": "$contactId", "n": {"$sum": 1}}},
                        ],
                        batchSize=len(unique) + 1,
                    )
                ).to_list()
                return {ContractCountKey(row["_id"], statuses): row["n"] for row in rows}

            counts: dict[ContractCountKey, int] = {}
            for found in await asyncio.gather(*[count(s, ids) for s, ids in groups.items()]):
                counts.update(found)
            return [counts.get(key, 0) for key in keys]

        super().__init__(load_fn=load)


class SubscriptionContractByIdLoader(DataLoader[ObjectId, Doc | None]):
    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(ids: list[ObjectId]) -> list[Doc | None]:
            rows = await database.subscription_contracts.find(
                {"shopId": shop_id, "_id": {"$in": list(ids)}}, batch_size=len(ids) + 1
            ).to_list()
            found = {row["_id"]: row for row in rows}
            return [found.get(i) for i in ids]

        super().__init__(load_fn=load)
