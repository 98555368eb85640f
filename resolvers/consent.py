"""Marketing consent: an append-only history whose newest event (by `at`) is the state.

A late event older than the current one joins the history without
changing the state, decided atomically by the update's own condition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now

STATES = ("NOT_SUBSCRIBED", "PENDING", "SUBSCRIBED", "UNSUBSCRIBED")
LEVELS = ("SINGLE_OPT_IN", "CONFIRMED_OPT_IN", "UNKNOWN")
SOURCES = ("ADMIN", "CHECKOUT", "CONTACT_FORM", "API", "IMPORT", "UNSUBSCRIBE_LINK")


@dataclass(frozen=True)
class ConsentEvent:
    state: str
    at: dt.datetime
    source: str
    opt_in_level: str | None = None
    actor: str | None = None
    evidence: str | None = None

    def to_doc(self) -> Doc:
        return {
            "state": self.state,
            "optInLevel": self.opt_in_level,
            "at": self.at,
            "source": self.source,
            "actor": self.actor,
            "evidence": self.evidence,
        }


def _log_entry(event: ConsentEvent) -> Doc:
    text = f"Marketing consent: {event.state} ({event.source})"
    return activity.entry("CONSENT_CHANGED", text=text, author=event.actor)


async def record_consent(
    database: Database, shop_id: str, contact_id: ObjectId, event: ConsentEvent
) -> Doc | None:
    """Add the event to the history; make it the state unless a newer event already is.

    Logs CONSENT_CHANGED. Returns the contact after the write, None when it does not exist.
    """
    history = {"$push": {"consent.history": {"$each": [event.to_doc()], "$sort": {"at": 1}}}}
    log = activity.push([_log_entry(event)])
    now = utc_now()
    newest = await database.contacts.find_one_and_update(
        {
            "shopId": shop_id,
            "_id": contact_id,
            "$or": [{"consent.at": {"$lte": event.at}}, {"consent.at": None}],
        },
        activity.merge_updates(
            history,
            log,
            {
                "$set": {
                    "consent.state": event.state,
                    "consent.optInLevel": event.opt_in_level,
                    "consent.at": event.at,
                    "consent.source": event.source,
                    "updatedAt": now,
                }
            },
        ),
        projection={"activity": 0},
        return_document=ReturnDocument.AFTER,
    )
    if newest is not None:
        return newest
    # Either the contact is gone or a newer event holds the state: history only.
    return await database.contacts.find_one_and_update(
        {"shopId": shop_id, "_id": contact_id},
        activity.merge_updates(history, log, {"$set": {"updatedAt": now}}),
        projection={"activity": 0},
        return_document=ReturnDocument.AFTER,
    )


def current_state(contact: dict[str, Any]) -> str:
    return (contact.get("consent") or {}).get("state") or "NOT_SUBSCRIBED"
