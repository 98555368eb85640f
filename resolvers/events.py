"""Outbound events: what changed, written in the same transaction as the change.

A change and its event commit together or not at all, so there is no event
for a change that did not happen and no change without its event. Delivery
to the shop's endpoints happens later, in the background.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from loaders.mongo import Database
from resolvers.clock import now

EVENT_TYPES = (
    "CONTACT_CREATED",
    "CONTACT_UPDATED",
    "CONTACT_DELETED",
    "CONTACT_MERGED",
    "CONTACT_ERASED",
    "CONSENT_CHANGED",
    "LABELS_CHANGED",
    "SUBSCRIPTION_CANCEL_REQUESTED",
)


async def emit(
    database: Database,
    shop_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    session: Any,
    contact_id: ObjectId | None = None,
) -> None:
    """Record one event; `session` must be the change's own transaction."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    await database.events.insert_one(
        {
            "_id": ObjectId(),
            "shopId": shop_id,
            "type": event_type,
            "timestamp": now(),
            "contactId": contact_id,
            "data": data,
        },
        session=session,
    )
