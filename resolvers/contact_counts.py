"""How many contacts a shop has, in total and per kind, without counting them.

The counters change in the transaction of the write that adds, removes or
re-kinds a contact, so they are exact whenever that write is visible. They
are spread over SLOTS documents per shop, `{shopId, slot, total, CUSTOMER,
LEAD}`: every change `$inc`s one slot picked at random (created on first
use) and a read sums the shop's slots. A single document per shop would be
written by every contact creation of the shop, and concurrent transactions
writing one document conflict and run again one after another; with slots
most of them touch different documents.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from loaders.mongo import Database

SLOTS = 8
KINDS = ("CUSTOMER", "LEAD")


async def count_contacts(
    database: Database, shop_id: str, deltas: Mapping[str, int], *, session: Any
) -> None:
    """Adjust the shop's counters by `deltas` (kind -> change) inside the caller's transaction.

    `{"LEAD": 1}` is a new lead, `{"CUSTOMER": -1}` a deleted customer,
    `{"LEAD": -1, "CUSTOMER": 1}` a lead that became a customer. The total
    changes by the sum of the deltas.
    """
    unknown = set(deltas) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown contact kind {sorted(unknown)[0]}")
    changes = {kind: int(delta) for kind, delta in deltas.items() if delta}
    if not changes:
        return
    await database.contact_counts.update_one(
        {"shopId": shop_id, "slot": random.randrange(SLOTS)},
        {"$inc": {"total": sum(changes.values()), **changes}},
        upsert=True,
        session=session,
    )


async def contact_totals(
    database: Database, shop_id: str, *, session: Any = None
) -> dict[str, int]:
    """`{"total": n, "CUSTOMER": c, "LEAD": l}` for the shop: one indexed find over its slots."""
    totals = {"total": 0, **{kind: 0 for kind in KINDS}}
    projection = {"_id": 0, "total": 1, **{kind: 1 for kind in KINDS}}
    async for slot in database.contact_counts.find(
        {"shopId": shop_id}, projection, session=session
    ):
        for key in totals:
            totals[key] += int(slot.get(key) or 0)
    return totals


def kind_change(before: str | None, after: str | None) -> dict[str, int]:
    """The deltas for a contact whose kind goes from `before` to `after` (None: no contact)."""
    deltas: dict[str, int] = {}
    if before is not None:
        deltas[before] = deltas.get(before, 0) - 1
    if after is not None:
        deltas[after] = deltas.get(after, 0) + 1
    return {kind: delta for kind, delta in deltas.items() if delta}


async def rebuild_counts(
    database: Database, shop_id: str, *, session: Any = None
) -> dict[str, int]:
    """Replace the shop's counters with an exact count of its contacts (migrations, repairs)."""
    totals = {"total": 0, **{kind: 0 for kind in KINDS}}
    async for row in await database.contacts.aggregate(
        [{"$match": {"shopId": shop_id}}, {"$group": {"_id": "$kind", "n": {"$sum": 1}}}],
        session=session,
    ):
        if row["_id"] in KINDS:
            totals[row["_id"]] += row["n"]
        totals["total"] += row["n"]
    await database.contact_counts.delete_many({"shopId": shop_id}, session=session)
    await database.contact_counts.insert_one(
        {"shopId": shop_id, "slot": 0, **totals}, session=session
    )
    return totals
