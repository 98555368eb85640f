"""Changing a stored order (a new status or refunded amount) and canceling it; the contact follows.

Each change runs inside a transaction with the read it was computed from:
the order's write, the contact's statistics and its log entry commit
together or not at all. Canceled is final, as on the shop platforms: a later
report (a webhook replayed with its original status) never reopens an
order. Reports are applied in the shop's order: one whose updatedAt is
older than the report applied last changes nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from bson import ObjectId

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.errors import not_found
from resolvers.order_docs import d128, decimal, order_label
from resolvers.order_stats import counted, stats_update, uncount_update

# What a change needs of the contact it moves.
_CONTACT_FIELDS = {"firstOrderAt": 1, "lastOrderAt": 1, "activityEmbedded": 1}


async def change_order(
    database: Database,
    shop_id: str,
    order: Doc,
    *,
    status: str | None = None,
    refunded: Decimal | None = None,
    author: str | None = None,
    reported_at: dt.datetime | None = None,
    session: Any,
) -> tuple[Doc, Doc | None]:
    """Move an order, read in `session`'s transaction, to a new status and/or refunded amount.

    Returns the order as it now is and, when the contact's log grew,
    `{_id, activityEmbedded}` of the contact (for the archive move after
    the commit).

    `reported_at` is the shop's updatedAt of the report: one older than the
    report applied last changes nothing. A report without it applies as
    before and leaves the stored time alone.
    """
    applied_at = order.get("shopUpdatedAt")
    if reported_at is not None and applied_at is not None and reported_at < applied_at:
        return order, None
    sets: Doc = {}
    if status is not None and status != order["status"] and order["status"] != "CANCELED":
        sets["status"] = status
    if refunded is not None and refunded != decimal(order["refunded"]):
        sets["refunded"] = d128(refunded)
    newer = reported_at is not None and (applied_at is None or reported_at > applied_at)
    if not sets and not newer:
        return order, None
    where: Doc = {"_id": order["_id"], "shopId": shop_id}
    update: Doc = {}
    changed = dict(order)
    if sets:
        sets["updatedAt"] = utc_now()
        update["$set"] = sets
        changed.update(sets)
    if reported_at is not None:
        # The transaction already keeps a newer report from being undone; the
        # filter says so too, for a caller whose order was read before it.
        # Missing and null match: an order first reported without a time.
        where["shopUpdatedAt"] = {"$not": {"$gt": reported_at}}
        update["$max"] = {"shopUpdatedAt": reported_at}
        changed["shopUpdatedAt"] = max(reported_at, applied_at or reported_at)
    result = await database.orders.update_one(where, update, session=session)
    if result.matched_count != 1:
        current = await database.orders.find_one(
            {"_id": order["_id"], "shopId": shop_id}, session=session
        )
        if current is None:
            raise not_found(("id",), "Order")
        return current, None
    return changed, await _follow_status(database, shop_id, order, changed, author, session)


async def _follow_status(
    database: Database, shop_id: str, before: Doc, after: Doc, author: str | None, session: Any
) -> Doc | None:
    """The contact's statistics and log after an order's status changed, in the same transaction."""
    contact_id = after.get("contactId")
    if contact_id is None or before["status"] == after["status"]:
        return None
    was, counts = counted(before["status"]), counted(after["status"])
    entries = []
    if after["status"] == "CANCELED":
        entries.append(
            activity.entry(
                "ORDER_CANCELED", text=order_label(after), author=author, order_id=after["_id"]
            )
        )
    if was == counts and not entries:
        return None  # OPEN to FULFILLED: nothing about the contact changes
    contact = await database.contacts.find_one(
        {"_id": contact_id, "shopId": shop_id}, _CONTACT_FIELDS, session=session
    )
    if contact is None:
        return None  # deleting a contact unlinks its orders in its own transaction
    at = utc_now()
    update: Doc = {"$set": {"updatedAt": at}}
    if was and not counts:
        update = await uncount_update(database, shop_id, contact, after, at, session)
    elif counts and not was:
        update = activity.merge_updates(update, stats_update(after, +1))
    if entries:
        update = activity.merge_updates(update, activity.push(entries))
    await database.contacts.update_one(
        {"_id": contact_id, "shopId": shop_id}, update, session=session
    )
    return {
        "_id": contact_id,
        "activityEmbedded": (contact.get("activityEmbedded") or 0) + len(entries),
    }


async def cancel_order(database: Database, shop_id: str, order_id: ObjectId, author: str) -> Doc:
    """Cancel from the admin side, in one transaction; canceling a canceled order changes nothing.

    Returns the order as it now is; its contact is read by whoever needs it.
    """

    async def work(session: Any) -> tuple[Doc, Doc | None]:
        order = await database.orders.find_one(
            {"_id": order_id, "shopId": shop_id}, session=session
        )
        if order is None:
            raise not_found(("id",), "Order")
        return await change_order(
            database, shop_id, order, status="CANCELED", author=author, session=session
        )

    order, logged = await activity.in_transaction(database, work)
    await activity.spill_overflow(database, shop_id, logged)
    return order
