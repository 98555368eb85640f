"""Marketing consent: an append-only history whose newest event (by `at`) is the state.

A late event older than the current one joins the history without
changing the state, decided atomically by the update's own condition.

Who records an event decides its source: an ADMIN key is the shop's own
administration (ADMIN); any other key is an integration or a staff tool
acting through the API (API). The key's name is the actor either way.
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
from resolvers.errors import Refused, not_found
from resolvers.events import contact_gid, emit
from resolvers.validation import TEXT_MAX, Checker

STATES = ("NOT_SUBSCRIBED", "PENDING", "SUBSCRIBED", "UNSUBSCRIBED")
# The opt-in level says how a yes was given; only these states are a yes (or on the way to one).
LEVELED_STATES = ("PENDING", "SUBSCRIBED")
# How far ahead of the server's clock a client's `at` may be (clocks drift).
CLOCK_SKEW = dt.timedelta(minutes=5)
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
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
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    event: ConsentEvent,
) -> Doc | None:
    """Add the event to the history; make it the state unless a newer event already is.

    Logs CONSENT_CHANGED, and emits the CONSENT_CHANGED event when the state
    (or its opt-in level) really changed, in one transaction of its own.
    Returns the contact after the write, None when it does not exist. (A
    caller that writes the contact in its own transaction uses
    `consent_change`.)
    """

    async def work(session: Any) -> Doc | None:
        return await _record_consent(database, shop_id, contact_id, event, session)

    newest = await activity.in_transaction(database, work)
    await activity.spill_overflow(database, shop_id, newest)
    return newest


async def _record_consent(
    database: Database, shop_id: str, contact_id: ObjectId, event: ConsentEvent, session: Any
) -> Doc | None:
    # The history is oldest first. The newest event goes at its end as a
    # plain append, which MongoDB logs as that one event; only a late event
    # needs `$sort`, which makes MongoDB log the whole history.
    appended = {"$push": {"consent.history": {"$each": [event.to_doc()]}}}
    sorted_in = {"$push": {"consent.history": {"$each": [event.to_doc()], "$sort": {"at": 1}}}}
    log = activity.push([_log_entry(event)])
    now = utc_now()
    before = await database.contacts.find_one(
        {"_id": contact_id, "shopId": shop_id},
        {"consent.state": 1, "consent.optInLevel": 1},
        session=session,
    )
    if before is None:
        return None
    newest = await database.contacts.find_one_and_update(
        {
            "_id": contact_id,  # first: the embedded server then looks it up by id
            "shopId": shop_id,
            # Not newer than this event, or none yet: one field's condition, as a
            # top-level `$or` makes the embedded server scan every contact.
            "consent.at": {"$not": {"$gt": event.at}},
        },
        activity.merge_updates(
            appended,
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
        session=session,
    )
    if newest is None:
        # A newer event holds the state: history only, and no CONSENT_CHANGED event.
        return await database.contacts.find_one_and_update(
            {"shopId": shop_id, "_id": contact_id},
            activity.merge_updates(sorted_in, log, {"$set": {"updatedAt": now}}),
            projection={"activity": 0},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
    await consent_changed(database, shop_id, contact_id, before, event, session=session)
    return newest


async def consent_changed(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    before: Doc | None,
    event: ConsentEvent,
    *,
    session: Any,
) -> None:
    """CONSENT_CHANGED for an event that became the state; nothing when the state stays as it was.

    `before` is the contact (its `consent`) before the event, None for a contact made with it.
    """
    held = (before or {}).get("consent") or {}
    previous = held.get("state") or "NOT_SUBSCRIBED"
    if previous == event.state and held.get("optInLevel") == event.opt_in_level:
        return
    await emit(
        database,
        shop_id,
        "CONSENT_CHANGED",
        {
            "id": contact_gid(contact_id),
            "state": event.state,
            "previousState": previous,
            "optInLevel": event.opt_in_level,
            "source": event.source,
            "at": event.at,
        },
        session=session,
        contact_id=contact_id,
    )


def check_event(
    state: str,
    opt_in_level: str | None,
    evidence: str | None,
    at: dt.datetime | None,
    *,
    now: dt.datetime,
) -> tuple[str | None, dt.datetime]:
    """(evidence, at) as recorded; Refused with every problem at once."""
    check = Checker()
    if state not in STATES:
        check.add(("state",), "Unknown marketing state.", "INVALID")
    if opt_in_level is not None and opt_in_level not in LEVELS:
        check.add(("optInLevel",), "Unknown opt-in level.", "INVALID")
    elif opt_in_level is not None and state not in LEVELED_STATES:
        check.add(
            ("optInLevel",), "An opt-in level goes with SUBSCRIBED or PENDING only.", "INVALID"
        )
    cleaned = check.text(("evidence",), evidence, TEXT_MAX, multiline=True)
    when = now if at is None else at
    if when.tzinfo is None:
        check.add(("at",), "The time needs a UTC offset.", "INVALID")
    elif when > now + CLOCK_SKEW:
        check.add(("at",), "Consent cannot be given in the future.", "INVALID")
    elif when < EARLIEST:
        check.add(("at",), "The time is before 1970.", "INVALID")
    if not check.ok:
        raise Refused(check.problems)
    return cleaned, when


def source_for(role: str) -> str:
    return "ADMIN" if role == "ADMIN" else "API"


async def update_consent(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    state: str,
    *,
    opt_in_level: str | None,
    evidence: str | None,
    at: dt.datetime | None,
    role: str,
    actor: str,
) -> Doc:
    """Record a consent event given through the API (consentUpdate); the contact after it."""
    evidence, when = check_event(state, opt_in_level, evidence, at, now=utc_now())
    event = ConsentEvent(
        state=state,
        at=when,
        source=source_for(role),
        opt_in_level=opt_in_level,
        actor=actor,
        evidence=evidence,
    )
    contact = await record_consent(database, shop_id, contact_id, event)
    if contact is None:
        raise not_found(("contactId",))
    return contact


def current_state(contact: dict[str, Any]) -> str:
    return (contact.get("consent") or {}).get("state") or "NOT_SUBSCRIBED"


def first_consent(event: ConsentEvent) -> tuple[Doc, Doc]:
    """(the `consent` field, its CONSENT_CHANGED entry) of a contact made with this event."""
    state = {"state": event.state, "optInLevel": event.opt_in_level, "at": event.at}
    return {**state, "source": event.source, "history": [event.to_doc()]}, _log_entry(event)


def consent_change(contact: Doc, event: ConsentEvent) -> tuple[Doc, Doc]:
    """(update, CONSENT_CHANGED entry) recording the event on a contact read in a transaction.

    What `record_consent` does, for a caller that writes the contact itself,
    in a transaction that makes the contact as read the one it writes: the
    event joins the history and becomes the state unless a newer event holds
    it. The caller pushes the entry with its own (one `$push` per write).
    """
    held = (contact.get("consent") or {}).get("at")
    newest = held is None or held <= event.at
    # The newest event goes at the end of the history (oldest first): no re-sort needed.
    each: Doc = {"$each": [event.to_doc()]}
    if not newest:
        each["$sort"] = {"at": 1}
    update: Doc = {"$push": {"consent.history": each}}
    if newest:
        update["$set"] = {
            "consent.state": event.state,
            "consent.optInLevel": event.opt_in_level,
            "consent.at": event.at,
            "consent.source": event.source,
        }
    return update, _log_entry(event)
