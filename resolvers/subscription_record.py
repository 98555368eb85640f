"""Recording a subscription or membership the shop reports (`subscriptionContractRecord`, the webhook).

The shop owns billing: it reports a contract when it starts and whenever it
changes, and contactgraph keeps what it is told. One report is one
transaction: the contract (found by (shopId, externalId), else inserted),
its contact (found by e-mail, else made a CUSTOMER: a membership purchase
makes a customer; a LEAD becomes a CUSTOMER), the contact's log entries and
its `activeSubscriptionCount` / `isMember`, which are counted afresh from
the contact's contracts inside the same transaction and so are exact
whichever reports run at once (two reports for one contact both write it:
one of them runs again from a fresh snapshot).

Reports are applied in the shop's order: one whose `updatedAt` is older than
the report applied last changes nothing, and a report that says nothing
new (a replay) writes nothing and logs nothing. An ended contract (CANCELED,
EXPIRED) stays ended, as a canceled order stays canceled: a late or
replayed report of its earlier state cannot revive it. Renewals (a new
`nextBillingAt`) and a new start date are stored without a log entry; a
change of status, price, quantity, interval or title is one entry.

After the commit, a contact log that has outgrown its bound moves its
oldest entries to the archive, as after an order (activity.spill_overflow).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from pymongo.errors import DuplicateKeyError

from loaders.contacts import LIST_PROJECTION
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.contact_events import contact_changed, contacts_created
from resolvers.contacts import derived_fields, new_contact
from resolvers.errors import Field
from resolvers.order_record import DUPLICATE_ATTEMPTS, settle_currency
from resolvers.subscription_input import (
    CURRENT,
    ENDED,
    MEMBER,
    CheckedSubscription,
    SubscriptionData,
    check_subscription,
)

# What the contact fields say, for contacts that never had a contract.
NO_SUBSCRIPTIONS: Doc = {"activeSubscriptionCount": 0, "isMember": False}
# What is compared between a stored contract and a report, and shown when it changes.
_LOGGED = ("status", "title", "quantity", "price", "interval", "intervalCount", "kind")
_SILENT = ("startedAt", "nextBillingAt", "endedAt", "currency")
# The contact's fields (API names) a contract may change: a CONTACT_UPDATED names them.
CHANGED_BY_CONTRACTS = ("kind", "firstName", "lastName", "activeSubscriptionCount", "isMember")
_STATUS_WORDS = {
    "ACTIVE": "active",
    "PAUSED": "paused",
    "PAST_DUE": "past due",
    "CANCELED": "canceled",
    "EXPIRED": "expired",
}


@dataclass
class Recorded:
    contract: Doc
    contact: Doc | None  # as written when this report made it; else read it by contactId
    created: bool  # a new contract (False: a known one, changed or not)
    logged: Doc | None = None  # the contact whose log grew: {_id, activityEmbedded}


def _price_text(price: Any, currency: str | None) -> str:
    amount = price.to_decimal() if isinstance(price, Decimal128) else Decimal(price)
    return f"{amount:f} {currency or ''}".strip()


def _every(interval: str, count: int) -> str:
    unit = interval.lower()
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def describe(contract: Doc) -> str:
    """What the log says a contract is: "Tea club (2 × 12.50 EUR every month)"."""
    quantity = contract["quantity"]
    each = _price_text(contract["price"], contract.get("currency"))
    amount = each if quantity == 1 else f"{quantity} × {each}"
    return (
        f"{contract['title']} ({amount} {_every(contract['interval'], contract['intervalCount'])})"
    )


def summary(contracts: Sequence[Doc]) -> Doc:
    """The contact fields these contracts (all of one person's) stand for."""
    return {
        "activeSubscriptionCount": sum(1 for c in contracts if c["status"] in CURRENT),
        "isMember": any(c["kind"] == "MEMBERSHIP" and c["status"] in MEMBER for c in contracts),
    }


async def subscription_summary(
    database: Database, shop_id: str, contact_ids: Sequence[ObjectId], session: Any = None
) -> Doc:
    """`activeSubscriptionCount` and `isMember` of these contacts taken together, from their contracts.

    Read inside the writer's transaction, it includes the writer's own
    contract changes; a merge passes all the contacts it joins.
    """
    ids = list(contact_ids)
    rows = await database.subscription_contracts.find(
        {"shopId": shop_id, "contactId": ids[0] if len(ids) == 1 else {"$in": ids}},
        {"status": 1, "kind": 1},
        session=session,
    ).to_list()
    return summary(rows)


def contract_doc(
    shop_id: str, checked: CheckedSubscription, contact_id: ObjectId, at: dt.datetime
) -> Doc:
    return {
        "_id": ObjectId(),
        "shopId": shop_id,
        "externalId": checked.external_id,
        "contactId": contact_id,
        # The buyer as reported: erasure finds contracts left unlinked by a delete by it.
        "email": checked.email,
        "emailKey": checked.email_key,
        "firstName": checked.first_name,
        "lastName": checked.last_name,
        **_reported(checked, at),
        "cancelRequestedAt": None,
        "shopUpdatedAt": checked.updated_at,
        "createdAt": at,
        "updatedAt": at,
    }


def _reported(checked: CheckedSubscription, at: dt.datetime) -> Doc:
    """The contract's fields as a report states them; an end without a time ended when reported."""
    ended_at = checked.ended_at
    if checked.status in ENDED and ended_at is None:
        ended_at = min(checked.updated_at or at, at)
    return {
        "kind": checked.kind,
        "status": checked.status,
        "title": checked.title,
        "quantity": checked.quantity,
        "price": Decimal128(checked.price),
        "currency": checked.currency,
        "interval": checked.interval,
        "intervalCount": checked.interval_count,
        "startedAt": checked.started_at,
        "nextBillingAt": checked.next_billing_at,
        "endedAt": ended_at,
    }


def _entry(kind: str, contract: Doc, text: str, at: dt.datetime) -> Doc:
    entry = activity.entry(kind, text=text, at=at)
    entry["subscriptionContractId"] = contract["_id"]
    return entry


def started_entries(contract: Doc, at: dt.datetime) -> list[Doc]:
    """A new contract's log: it started, and, when first reported over, it ended."""
    text = describe(contract)
    if contract["kind"] == "MEMBERSHIP":
        text = "Membership: " + text
    if contract["status"] in ("PAUSED", "PAST_DUE"):
        text += f", {_STATUS_WORDS[contract['status']]}"
    entries = [_entry("SUBSCRIPTION_STARTED", contract, text, min(contract["startedAt"], at))]
    if contract["status"] in ENDED:
        ended = min(contract["endedAt"] or at, at)
        words = f"{contract['title']}: {_STATUS_WORDS[contract['status']]}"
        entries.append(_entry("SUBSCRIPTION_ENDED", contract, words, ended))
    return entries


def _value(doc: Doc, name: str) -> Any:
    value = doc.get(name)
    return value.to_decimal() if isinstance(value, Decimal128) else value


def _changes_text(before: Doc, after: Doc) -> str:
    """What changed, in words: "paused; price 12.50 EUR → 14.00 EUR"."""
    parts = []
    if before["status"] != after["status"]:
        word = _STATUS_WORDS[after["status"]]
        if after["status"] == "ACTIVE":
            word = "resumed" if before["status"] == "PAUSED" else "active again"
        parts.append(word)
    if _value(before, "price") != _value(after, "price") or before.get("currency") != after.get(
        "currency"
    ):
        parts.append(
            f"price {_price_text(before['price'], before.get('currency'))} → "
            f"{_price_text(after['price'], after.get('currency'))}"
        )
    if before["quantity"] != after["quantity"]:
        parts.append(f"quantity {before['quantity']} → {after['quantity']}")
    if (before["interval"], before["intervalCount"]) != (after["interval"], after["intervalCount"]):
        parts.append(
            f"{_every(before['interval'], before['intervalCount'])} → "
            f"{_every(after['interval'], after['intervalCount'])}"
        )
    if before["title"] != after["title"]:
        parts.append(f"renamed from {before['title']}")
    if before["kind"] != after["kind"]:
        parts.append("now a membership" if after["kind"] == "MEMBERSHIP" else "now a product")
    return f"{after['title']}: " + "; ".join(parts)


def change_entries(before: Doc, after: Doc, at: dt.datetime) -> list[Doc]:
    """One entry for one report's real change: ENDED when it ended, else CHANGED; none for nothing."""
    if not any(_value(before, name) != _value(after, name) for name in _LOGGED):
        return []
    if after["status"] in ENDED and before["status"] not in ENDED:
        words = f"{after['title']}: {_STATUS_WORDS[after['status']]}"
        return [_entry("SUBSCRIPTION_ENDED", after, words, min(after["endedAt"] or at, at))]
    return [_entry("SUBSCRIPTION_CHANGED", after, _changes_text(before, after), at)]


def _changed_fields(stored: Doc, checked: CheckedSubscription, at: dt.datetime) -> Doc:
    """The fields a report of a stored contract changes; an ended contract only takes its end time."""
    reported = _reported(checked, at)
    if stored["status"] in ENDED:
        # Ended is final: neither a late nor a replayed report revives it.
        reported = {"endedAt": checked.ended_at} if checked.ended_at is not None else {}
    return {
        name: value
        for name, value in reported.items()
        if _value(stored, name) != (value.to_decimal() if isinstance(value, Decimal128) else value)
    }


async def _find_contact(
    database: Database, shop_id: str, checked: CheckedSubscription, session: Any
) -> Doc | None:
    return await database.contacts.find_one(
        {"shopId": shop_id, "emailKey": checked.email_key}, LIST_PROJECTION, session=session
    )


async def _new_customer(
    database: Database,
    shop_id: str,
    checked: CheckedSubscription,
    contract: Doc,
    at: dt.datetime,
    session: Any,
) -> Doc:
    """The CUSTOMER a first contract of a new e-mail makes, with its log and counts, inserted."""
    details = {
        "firstName": checked.first_name,
        "lastName": checked.last_name,
        **summary([contract]),
    }
    doc = new_contact(
        shop_id,
        checked.email,
        checked.email_key,
        "CUSTOMER",
        details,
        at,
        entries=started_entries(contract, at),
    )
    doc["_id"] = contract["contactId"]
    await database.contacts.insert_one(doc, session=session)
    await contacts_created(database, shop_id, [doc], session=session)
    return {k: v for k, v in doc.items() if k not in LIST_PROJECTION}


async def _follow(
    database: Database,
    shop_id: str,
    contact: Doc,
    checked: CheckedSubscription,
    entries: list[Doc],
    at: dt.datetime,
    session: Any,
) -> Doc | None:
    """The contact after its contract changed: kind, names, counts and log, in one write.

    Returns what the log's archive move needs, or None when nothing was written.
    """
    sets: Doc = {}
    if contact.get("kind") != "CUSTOMER":
        sets["kind"] = "CUSTOMER"
        entries = [*entries, activity.entry("CONVERTED_TO_CUSTOMER", text=checked.title, at=at)]
    names: Doc = {}
    if not contact.get("detailsLocked"):
        # A contract fills a missing name; the newest order decides otherwise.
        for key, value in (("firstName", checked.first_name), ("lastName", checked.last_name)):
            if value is not None and not contact.get(key):
                names[key] = value
    counts = await subscription_summary(database, shop_id, [contact["_id"]], session)
    for name, value in counts.items():
        if contact.get(name, NO_SUBSCRIPTIONS[name]) != value:
            sets[name] = value
    sets.update(names)
    if not sets and not entries:
        return None
    sets["updatedAt"] = at
    update: Doc = {"$set": sets}
    if names:
        sets.update(derived_fields({**contact, **names}))
        update["$inc"] = {"rev": 1}
    if entries:
        update = activity.merge_updates(update, activity.push(entries))
    result = await database.contacts.update_one(
        {"_id": contact["_id"], "shopId": shop_id}, update, session=session
    )
    if result.matched_count != 1:  # the snapshot holds it: a concurrent delete conflicts instead
        raise RuntimeError("the contact read in this transaction could not be written")
    # One CONTACT_UPDATED names them all; a lead's conversion moves the counters too.
    changed = {k: v for k, v in sets.items() if k in CHANGED_BY_CONTRACTS}
    await contact_changed(
        database, shop_id, contact["_id"], contact.get("kind"), changed, session=session
    )
    return {
        "_id": contact["_id"],
        "activityEmbedded": (contact.get("activityEmbedded") or 0) + len(entries),
    }


async def _record_once(
    database: Database, shop_id: str, checked: CheckedSubscription, at: dt.datetime, session: Any
) -> Recorded:
    known = await database.subscription_contracts.find_one(
        {"shopId": shop_id, "externalId": checked.external_id}, session=session
    )
    if known is None:
        contact = await _find_contact(database, shop_id, checked, session)
        contract = contract_doc(shop_id, checked, contact["_id"] if contact else ObjectId(), at)
        await database.subscription_contracts.insert_one(contract, session=session)
        if contact is None:
            written = await _new_customer(database, shop_id, checked, contract, at, session)
            return Recorded(contract, written, created=True, logged=written)
        entries = started_entries(contract, at)
        logged = await _follow(database, shop_id, contact, checked, entries, at, session)
        return Recorded(contract, None, created=True, logged=logged)

    applied_at = known.get("shopUpdatedAt")
    reported_at = checked.updated_at
    if reported_at is not None and applied_at is not None and reported_at < applied_at:
        return Recorded(known, None, created=False)  # older than what is applied: nothing
    changes = _changed_fields(known, checked, at)
    newer = reported_at is not None and (applied_at is None or reported_at > applied_at)
    if not changes and not newer:
        return Recorded(known, None, created=False)  # a replay
    contact = None
    if known.get("contactId") is not None:
        contact = await database.contacts.find_one(
            {"_id": known["contactId"], "shopId": shop_id}, LIST_PROJECTION, session=session
        )
    if contact is None and changes:
        # Its contact was deleted: the report's e-mail finds or makes the person again.
        contact = await _find_contact(database, shop_id, checked, session)
        changes["contactId"] = contact["_id"] if contact else ObjectId()
    sets: Doc = {**changes}
    if changes:
        sets["updatedAt"] = at
    if newer:
        sets["shopUpdatedAt"] = reported_at
    await database.subscription_contracts.update_one(
        {"_id": known["_id"], "shopId": shop_id}, {"$set": sets}, session=session
    )
    contract = {**known, **sets}
    if not changes:
        return Recorded(contract, None, created=False)
    if contact is None:
        written = await _new_customer(database, shop_id, checked, contract, at, session)
        return Recorded(contract, written, created=False, logged=written)
    entries = change_entries(known, contract, at)
    logged = await _follow(database, shop_id, contact, checked, entries, at, session)
    return Recorded(contract, None, created=False, logged=logged)


async def record_subscription(
    database: Database,
    shop_id: str,
    data: SubscriptionData,
    *,
    shop_currency: str | None = None,
) -> Recorded:
    """Record a contract the shop reports, all or nothing; idempotent on its externalId."""
    at = utc_now()
    checked = check_subscription(data, at)
    currency_path: Field = ("input", "currencyCode")

    async def work(session: Any) -> Recorded:
        await settle_currency(
            database, shop_id, shop_currency, checked.currency, currency_path, session
        )
        return await _record_once(database, shop_id, checked, at, session)

    for attempt in range(DUPLICATE_ATTEMPTS):
        try:
            recorded = await activity.in_transaction(database, work)
            break
        except DuplicateKeyError:
            if attempt == DUPLICATE_ATTEMPTS - 1:
                raise
    await activity.spill_overflow(database, shop_id, recorded.logged)
    return recorded
