"""Outbound events: what changed, written in the same transaction as the change.

A change and its event commit together or not at all, so there is no event
for a change that did not happen and no change without its event. In that
same transaction the event fans out: one delivery record per enabled
endpoint of the shop subscribed to its type, carrying the exact body every
attempt sends. Delivery happens later, in the background
(resolvers/event_delivery.py). Events and finished deliveries are kept 7
days (TTL on `expiresAt`).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from bson import Decimal128, ObjectId

from loaders.mongo import Database, Doc
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
KEEP = dt.timedelta(days=7)


def contact_gid(contact_id: ObjectId) -> str:
    """A contact's id as the API shows it, so a receiver can ask for it by that id.

    The same form as graph/types/node.py's `encode_id` (rules never import the graph layer).
    """
    return base64.urlsafe_b64encode(f"Contact:{contact_id}".encode()).decode().rstrip("=")


def _json_default(value: Any) -> Any:
    """What orjson does not write itself (it writes datetimes)."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be sent in an event")


def event_body(event_type: str, timestamp: dt.datetime, data: dict[str, Any]) -> str:
    """The JSON every delivery of the event sends: `{type, timestamp, data}` (Standard Webhooks)."""
    return orjson.dumps(
        {"type": event_type, "timestamp": timestamp, "data": data},
        default=_json_default,
        # Times as Standard Webhooks shows them: 2026-01-05T10:12:03.481000Z.
        option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC,
    ).decode()


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
    await emit_many(database, shop_id, event_type, [(contact_id, data)], session=session)


async def emit_many(
    database: Database,
    shop_id: str,
    event_type: str,
    items: Sequence[tuple[ObjectId | None, dict[str, Any]]],
    *,
    session: Any,
) -> None:
    """Record one event per (contact id, data), all in `session`'s transaction: a bulk change."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    if not items:
        return
    at = now()
    events: list[Doc] = [
        {
            "_id": ObjectId(),
            "shopId": shop_id,
            "type": event_type,
            "timestamp": at,
            "contactId": contact_id,
            "data": data,
            "expiresAt": at + KEEP,
        }
        for contact_id, data in items
    ]
    await database.events.insert_many(events, ordered=True, session=session)
    endpoints = await database.webhook_endpoints.find(
        {"shopId": shop_id, "enabled": True, "events": event_type}, {"_id": 1}, session=session
    ).to_list()
    if not endpoints:
        return
    bodies = [event_body(event_type, at, event["data"]) for event in events]
    await database.webhook_deliveries.insert_many(
        [
            {
                "_id": ObjectId(),
                "shopId": shop_id,
                "endpointId": endpoint["_id"],
                "eventId": event["_id"],
                "type": event_type,
                "contactId": event["contactId"],
                "seq": at,
                "body": body,
                "status": "PENDING",
                "attempts": 0,
                "createdAt": at,
                "nextAttemptAt": at,
                "lease": None,
            }
            for event, body in zip(events, bodies, strict=True)
            for endpoint in endpoints
        ],
        ordered=True,
        session=session,
    )
