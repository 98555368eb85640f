"""Recording an order the shop reports (`orderRecord`, the order webhook): one transaction.

A report is idempotent on its externalId. In one MongoDB transaction the
order is looked up by (shopId, externalId); a new one is inserted and lands
on the contact with its normalized email, found or made as a CUSTOMER, in
one write of that contact: statistics, details from the newest order, the
log entries and the marketing consent given at checkout. A report of a
known order is a replay: it changes the order only when its status or
refunded amount is new and it is not older than the report applied last
(resolvers.order_cancel.change_order).

All or nothing: a failure anywhere (the process stops, the connection
drops) leaves neither the order nor any change to its contact, and the
shop's resend records it then. Reports that touch the same documents at
once (two first orders of a new email, one externalId twice, a cancel or a
merge of the same contact) conflict, and `with_transaction` runs the loser
again from a fresh snapshot, where it sees what the winner wrote.

After the commit, a contact log that has outgrown its bound moves its
oldest entries to the archive (activity.spill_overflow): a transaction of
its own, on purpose. Every entry is readable and every counter exact
whether the move has happened or not, so the order need not wait for it or
fail with it, and the order's transaction stays as small as the order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from loaders.contacts import LIST_PROJECTION
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.consent import ConsentEvent, consent_change, consent_changed, first_consent
from resolvers.contact_events import contact_changed, contacts_created
from resolvers.contacts import derived_fields, new_contact
from resolvers.errors import Field, refuse
from resolvers.order_cancel import change_order
from resolvers.order_docs import order_doc, order_label, placed_entries
from resolvers.order_input import CheckedOrder, OrderData, check_order
from resolvers.order_stats import counted, first_stats, stats_update

# The contact's own fields (API names) an order may change: a CONTACT_UPDATED names them.
CHANGED_BY_ORDERS = (
    "kind",
    "firstName",
    "lastName",
    "phone",
    "billingAddress",
    "shippingAddress",
    "hasAccount",
)

# A key committed by another writer after this transaction's snapshot can
# surface as a duplicate key instead of a write conflict: the next attempt sees it.
DUPLICATE_ATTEMPTS = 5


async def settle_currency(
    database: Database,
    shop_id: str,
    known: str | None,
    wanted: str | None,
    path: Field,
    session: Any = None,
) -> str:
    """The shop's one currency, claimed by this order when the shop has none yet.

    `known` is the currency the caller already knows (the request's shop);
    once set it never changes, so a known currency costs no command. INVALID
    when the order's currency is another.
    """
    currency = known
    if currency is None:
        if wanted is None:
            doc = await database.shops.find_one({"_id": shop_id}, {"currency": 1}, session=session)
        else:
            # Atomic "set if unset": of two first orders in different currencies one wins.
            doc = await database.shops.find_one_and_update(
                {"_id": shop_id},
                [{"$set": {"currency": {"$ifNull": ["$currency", wanted]}}}],
                projection={"currency": 1},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
        currency = (doc or {}).get("currency")
    if wanted is None:
        if currency is None:
            raise refuse(path, "The shop has no currency yet: give a currency code.", "REQUIRED")
        return currency
    if currency != wanted:
        raise refuse(path, f"This shop records orders in {currency}, not {wanted}.", "INVALID")
    return currency


@dataclass
class Recorded:
    order: Doc
    contact: Doc | None  # as written when this order made it; else read it by the order's contactId
    created: bool  # a new order (False: a replay, changed or not)
    logged: Doc | None = None  # the contact whose log grew: {_id, activityEmbedded}


def _checkout_consent(checked: CheckedOrder) -> ConsentEvent | None:
    if not checked.accepts_marketing:
        return None
    return ConsentEvent(
        state="SUBSCRIBED",
        at=checked.placed_at,
        source="CHECKOUT",
        opt_in_level="SINGLE_OPT_IN",
        evidence=checked.external_id,
    )


def new_customer(shop_id: str, order: Doc, checked: CheckedOrder, at: dt.datetime) -> Doc:
    """The contact a first order of a new email makes, with everything the order brings."""
    entries = placed_entries(order)
    details: Doc = {
        "firstName": checked.first_name,
        "lastName": checked.last_name,
        "phone": checked.phone,
        "billingAddress": checked.billing_address,
        "hasAccount": checked.has_account is True,
        **first_stats(order),
    }
    if checked.amounts.ships and checked.shipping_address:
        details["shippingAddress"] = checked.shipping_address
        details["shipAt"] = checked.placed_at
    event = _checkout_consent(checked)
    if event is not None:
        details["consent"], logged = first_consent(event)
        entries.append(logged)
    doc = new_contact(
        shop_id, checked.email, checked.email_key, "CUSTOMER", details, at, entries=entries
    )
    doc["_id"] = order["contactId"]
    return doc


def landing_update(
    contact: Doc, order: Doc, checked: CheckedOrder, at: dt.datetime
) -> tuple[Doc, int]:
    """(update, entries logged) that lands a new order on a contact read in the same transaction.

    Name, phone, billing address and the account flag come from the newest
    order, the shipping address from the newest order that shipped, unless
    the contact's details are locked.
    """
    entries = placed_entries(order)
    sets: Doc = {"updatedAt": at}
    if contact.get("kind") != "CUSTOMER":
        sets["kind"] = "CUSTOMER"
        entries.append(activity.entry("CONVERTED_TO_CUSTOMER", text=order_label(order), at=at))
    placed = checked.placed_at
    last = contact.get("lastOrderAt")
    newest = last is None or placed >= last
    details: Doc = {}
    if not contact.get("detailsLocked"):
        if newest:
            for key, value in (
                ("firstName", checked.first_name),
                ("lastName", checked.last_name),
                ("phone", checked.phone),
                ("billingAddress", checked.billing_address),
            ):
                if value is not None and contact.get(key) != value:
                    details[key] = value
        ship_at = contact.get("shipAt")
        if (
            checked.amounts.ships
            and checked.shipping_address
            and (ship_at is None or placed >= ship_at)
        ):
            if contact.get("shippingAddress") != checked.shipping_address:
                details["shippingAddress"] = checked.shipping_address
            if ship_at != placed:
                details["shipAt"] = placed
    sets.update(details)
    if (
        newest
        and checked.has_account is not None
        and bool(contact.get("hasAccount")) != checked.has_account
    ):
        sets["hasAccount"] = checked.has_account
    update: Doc = {"$set": sets}
    if details.keys() & {"firstName", "lastName"}:
        # The name's sort key and search terms follow the name.
        sets.update(derived_fields({**contact, **details}))
        update["$inc"] = {"rev": 1}
    if counted(order["status"]):
        update = activity.merge_updates(update, stats_update(order, +1))
    event = _checkout_consent(checked)
    if event is not None:
        change, logged = consent_change(contact, event)
        update = activity.merge_updates(update, change)
        entries.append(logged)
    # One push for every entry: the log's counters are `$inc`s that must not collide.
    return activity.merge_updates(update, activity.push(entries)), len(entries)


async def _checkout_consent_changed(
    database: Database,
    shop_id: str,
    contact: Doc | None,
    contact_id: ObjectId,
    checked: CheckedOrder,
    session: Any,
) -> None:
    """CONSENT_CHANGED when the checkout's yes became the state (as `consent_change` decides)."""
    event = _checkout_consent(checked)
    if event is None:
        return
    held = ((contact or {}).get("consent") or {}).get("at")
    if held is None or held <= event.at:
        await consent_changed(database, shop_id, contact_id, contact, event, session=session)


async def _record_once(
    database: Database, shop_id: str, checked: CheckedOrder, at: dt.datetime, session: Any
) -> Recorded:
    known = await database.orders.find_one(
        {"shopId": shop_id, "externalId": checked.external_id}, session=session
    )
    if known is not None:
        order, logged = await change_order(
            database,
            shop_id,
            known,
            status=checked.status,
            refunded=checked.refunded,
            reported_at=checked.updated_at,
            session=session,
        )
        return Recorded(order, None, created=False, logged=logged)
    contact = await database.contacts.find_one(
        {"shopId": shop_id, "emailKey": checked.email_key}, LIST_PROJECTION, session=session
    )
    order = order_doc(shop_id, checked, contact["_id"] if contact else ObjectId(), at)
    await database.orders.insert_one(order, session=session)
    if contact is None:
        doc = new_customer(shop_id, order, checked, at)
        await database.contacts.insert_one(doc, session=session)
        await contacts_created(database, shop_id, [doc], session=session)
        await _checkout_consent_changed(database, shop_id, None, doc["_id"], checked, session)
        written = {k: v for k, v in doc.items() if k not in LIST_PROJECTION}
        return Recorded(order, written, created=True, logged=written)
    update, pushed = landing_update(contact, order, checked, at)
    result = await database.contacts.update_one(
        {"_id": contact["_id"], "shopId": shop_id}, update, session=session
    )
    if result.matched_count != 1:  # the snapshot holds it: a concurrent delete conflicts instead
        raise RuntimeError("the contact read in this transaction could not be written")
    changed = {k: v for k, v in update["$set"].items() if k in CHANGED_BY_ORDERS}
    await contact_changed(
        database, shop_id, contact["_id"], contact.get("kind"), changed, session=session
    )
    await _checkout_consent_changed(database, shop_id, contact, contact["_id"], checked, session)
    embedded = (contact.get("activityEmbedded") or 0) + pushed
    return Recorded(
        order, None, created=True, logged={"_id": contact["_id"], "activityEmbedded": embedded}
    )


async def record_order(
    database: Database, shop_id: str, data: OrderData, *, shop_currency: str | None = None
) -> Recorded:
    """Record an order the shop reports, all or nothing; idempotent on its externalId.

    A new order: the order look-up, the contact look-up, the order insert,
    the contact's insert or update, the commit. A replay changes nothing
    unless its status or refunded amount is new; then the order and the
    statistics follow.
    """
    at = utc_now()
    checked = check_order(data, at)
    currency_path: Field = ("input", "currencyCode")

    async def work(session: Any) -> Recorded:
        await settle_currency(
            database, shop_id, shop_currency, checked.amounts.currency, currency_path, session
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
