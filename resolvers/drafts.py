"""Draft orders: made by staff for a contact, never placed by the shop, never counted.

A draft and its contact's change (DRAFT_ORDER_CREATED logged; a LEAD
becomes a CUSTOMER) are written in one transaction. A draft has no id from
the shop: its `externalId` is its own `_id` (see resolvers.order_docs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bson import ObjectId

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.contact_events import contact_changed
from resolvers.errors import not_found
from resolvers.order_docs import draft_doc, order_label
from resolvers.order_input import DraftData, check_draft
from resolvers.order_record import settle_currency

_CONTACT_FIELDS = {
    "email": 1,
    "emailKey": 1,
    "firstName": 1,
    "lastName": 1,
    "phone": 1,
    "kind": 1,
    "activityEmbedded": 1,
}


async def create_draft(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    data: DraftData,
    author: str,
    *,
    shop_currency: str | None = None,
) -> Doc:
    """A DRAFT order for a contact, as stored; NOT_FOUND (nothing written) for an unknown contact."""
    checked = check_draft(data)

    async def work(session: Any) -> tuple[Doc, Doc]:
        contact = await database.contacts.find_one(
            {"_id": contact_id, "shopId": shop_id}, _CONTACT_FIELDS, session=session
        )
        if contact is None:
            raise not_found(("contactId",))
        currency = await settle_currency(
            database, shop_id, shop_currency, checked.currency, ("input", "currencyCode"), session
        )
        draft = replace(checked, amounts=replace(checked.amounts, currency=currency))
        at = utc_now()
        order = draft_doc(shop_id, contact, draft, author, at)
        await database.orders.insert_one(order, session=session)
        label = order_label(order)
        entries = [
            activity.entry(
                "DRAFT_ORDER_CREATED", text=label, author=author, order_id=order["_id"], at=at
            )
        ]
        sets: Doc = {"updatedAt": at}
        if contact.get("kind") == "LEAD":
            sets["kind"] = "CUSTOMER"
            entries.append(
                activity.entry("CONVERTED_TO_CUSTOMER", text=label, author=author, at=at)
            )
        await database.contacts.update_one(
            {"_id": contact_id, "shopId": shop_id},
            activity.merge_updates({"$set": sets}, activity.push(entries)),
            session=session,
        )
        if "kind" in sets:
            await contact_changed(
                database,
                shop_id,
                contact_id,
                contact["kind"],
                {"kind": sets["kind"]},
                session=session,
            )
        embedded = (contact.get("activityEmbedded") or 0) + len(entries)
        return order, {"_id": contact_id, "activityEmbedded": embedded}

    order, logged = await activity.in_transaction(database, work)
    await activity.spill_overflow(database, shop_id, logged)
    return order
