"""A contact's order statistics and first/last order times, and how an order moves them.

Only OPEN and FULFILLED orders count; canceled and draft ones never do.
`orderCount` and `totalSpent` (Decimal128, so sums stay exact) move by
`$inc`, `firstOrderAt` and `lastOrderAt` by `$min` and `$max` when an order
starts counting. When one stops counting, the two times are derived again
from the orders still counted, unless the order lay strictly between them.
The times are never stored as null (see resolvers.contacts.BOUND_FIELDS).

Every update here is written in the same transaction as the order change
that causes it, from the contact as read in that transaction, so two orders
of one contact never interleave: one of them conflicts and runs again.
Every statistics write bumps `orderRev`, which the statistics repair
(resolvers/migrations.py), running outside transactions, compares against.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from loaders.mongo import Database, Doc
from loaders.orders import history_stages
from resolvers import activity
from resolvers.contacts import set_or_unset
from resolvers.order_docs import d128, decimal

# Orders that count in a contact's statistics.
COUNTED = ("OPEN", "FULFILLED")


def counted(status: str | None) -> bool:
    return status in COUNTED


def stats_update(order: Doc, sign: int) -> Doc:
    """Statistics moves for an order starting (+1) or ending (-1) to count."""
    total = decimal(order["total"])
    update: Doc = {"$inc": {"orderCount": sign, "totalSpent": d128(total * sign), "orderRev": 1}}
    if sign > 0:
        update["$min"] = {"firstOrderAt": order["placedAt"]}
        update["$max"] = {"lastOrderAt": order["placedAt"]}
    return update


def first_stats(order: Doc) -> Doc:
    """The statistics fields of a contact whose only order this is."""
    if not counted(order["status"]):
        return {"orderRev": 1}  # a new contact's count and sum start at zero
    return {
        "orderCount": 1,
        "totalSpent": order["total"],
        "firstOrderAt": order["placedAt"],
        "lastOrderAt": order["placedAt"],
        "orderRev": 1,
    }


async def counted_bounds(
    database: Database, shop_id: str, contact_id: Any, session: Any
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(first, last) placement time of the contact's counted orders, as this transaction sees them."""
    rows = await (
        await database.orders.aggregate(
            [
                *history_stages(shop_id, [contact_id], COUNTED),
                {
                    "$group": {
                        "_id": None,
                        "first": {"$min": "$placedAt"},
                        "last": {"$max": "$placedAt"},
                    }
                },
            ],
            session=session,
        )
    ).to_list()
    return (rows[0]["first"], rows[0]["last"]) if rows else (None, None)


async def uncount_update(
    database: Database, shop_id: str, contact: Doc, order: Doc, at: dt.datetime, session: Any
) -> Doc:
    """The update taking `order` (already stored as no longer counted) out of `contact`'s statistics.

    `contact` is as read in the transaction (its first and last order
    times); the order's own change must already be written in it, so the
    orders read here leave it out.
    """
    update = activity.merge_updates(stats_update(order, -1), {"$set": {"updatedAt": at}})
    first, last = contact.get("firstOrderAt"), contact.get("lastOrderAt")
    if first is not None and last is not None and first < order["placedAt"] < last:
        return update  # other counted orders still hold both times
    first, last = await counted_bounds(database, shop_id, contact["_id"], session)
    # No counted order left: the times go (never null).
    return activity.merge_updates(
        update, set_or_unset({"firstOrderAt": first, "lastOrderAt": last})
    )
