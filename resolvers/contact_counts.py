"""How many contacts a shop has, in total and per kind, without counting them.

The counters change in the transaction of the write that adds, removes or
re-kinds a contact, so they are exact whenever that write is visible. They
are kept as parts: documents `{shopId, total, CUSTOMER, LEAD}` whose sum is
the shop's count. A write inserts one part holding its own change (a new
lead is `{total: 1, LEAD: 1}`), and a read sums the shop's parts with one
indexed find.

Why parts and not one document per shop that every write `$inc`s: two
transactions that write the same document conflict, and one of them runs
again from the start after a pause, so concurrent contact creations of one
shop would queue behind a single hot document. Spreading the `$inc`s over
a few slot documents only makes that rarer (measured on the embedded
server, 60 concurrent creations: 8 slots ran 300 transactions for 60
writes, 64 slots still 90); inserts of distinct documents never conflict.

Parts pile up with writes, so a read that finds more than COMPACT_AT of
them replaces them by their sum in a small transaction of its own (two
compactions at once conflict on the parts they both delete, and one runs
again on what is left). A read therefore sums at most a few dozen small
documents, however many contacts the shop has.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from loaders.mongo import Database, Doc
from resolvers.activity import in_transaction

log = logging.getLogger("contactgraph")

KINDS = ("CUSTOMER", "LEAD")
FIELDS = ("total", *KINDS)
# A read that finds more parts than this folds them into one.
COMPACT_AT = 32
# Parts folded per compaction transaction: a transaction stays small.
COMPACT_BATCH = 5_000


def _empty() -> dict[str, int]:
    return dict.fromkeys(FIELDS, 0)


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
        raise ValueError(f"unknown contact kind {sorted(unknown, key=str)[0]}")
    changes = {kind: int(delta) for kind, delta in deltas.items() if delta}
    if not changes:
        return
    await database.contact_counts.insert_one(
        {"_id": ObjectId(), "shopId": shop_id, "total": sum(changes.values()), **changes},
        session=session,
    )


def _add(totals: dict[str, int], part: Doc) -> None:
    for name in FIELDS:
        totals[name] += int(part.get(name) or 0)


async def contact_totals(database: Database, shop_id: str) -> dict[str, int]:
    """`{"total": n, "CUSTOMER": c, "LEAD": l}` for the shop: one indexed find over its parts."""
    totals = _empty()
    parts = await database.contact_counts.find({"shopId": shop_id}, {"shopId": 0}).to_list()
    for part in parts:
        _add(totals, part)
    if len(parts) > COMPACT_AT:
        await compact(database, shop_id)
    return totals


async def compact(database: Database, shop_id: str) -> None:
    """Replace the shop's counter parts by one holding their sum; a failure changes nothing."""

    async def work(session: Any) -> int:
        parts = await database.contact_counts.find(
            {"shopId": shop_id}, {"shopId": 0}, limit=COMPACT_BATCH, session=session
        ).to_list()
        if len(parts) < 2:
            return 0
        folded = _empty()
        for part in parts:
            _add(folded, part)
        await database.contact_counts.delete_many(
            {"shopId": shop_id, "_id": {"$in": [part["_id"] for part in parts]}}, session=session
        )
        await database.contact_counts.insert_one(
            {"_id": ObjectId(), "shopId": shop_id, **folded}, session=session
        )
        return len(parts)

    try:
        while await in_transaction(database, work) == COMPACT_BATCH:
            pass
    except PyMongoError:
        # The sum is the same folded or not: the next read tries again.
        log.warning("contact counters of shop %s not compacted this time", shop_id, exc_info=True)


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
    """Replace the shop's counters with an exact count of its contacts (migrations, repairs).

    In a transaction, a contact written meanwhile is either in this count
    (its part, older than the snapshot, is deleted here) or not (its part,
    committed after the snapshot, stays): never both, never neither.
    """
    totals = _empty()
    async for row in await database.contacts.aggregate(
        [{"$match": {"shopId": shop_id}}, {"$group": {"_id": "$kind", "n": {"$sum": 1}}}],
        session=session,
    ):
        if row["_id"] in KINDS:
            totals[row["_id"]] += row["n"]
        totals["total"] += row["n"]
    await database.contact_counts.delete_many({"shopId": shop_id}, session=session)
    await database.contact_counts.insert_one(
        {"_id": ObjectId(), "shopId": shop_id, **totals}, session=session
    )
    return totals
