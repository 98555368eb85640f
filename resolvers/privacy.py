"""The person's rights: a copy of everything stored about them, and erasure.

Erasure deletes the contact, its archived activity (notes included) and
the messages sent to it, and takes the person out of the orders and
subscription contracts, which stay for the books: email, names, phones and
addresses go; the email becomes a random placeholder that cannot be turned
back into the address (the same
placeholder on all of the person's orders, so the books still show that
they were one customer). Everything happens in one transaction.
"""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.contact_events import contact_erased
from resolvers.errors import not_found

ERASED_DOMAIN = "erased.invalid"  # RFC 2606: can never be a real address
# What an order keeps about a person, besides the email: removed on erasure.
ORDER_PERSONAL_FIELDS = ("firstName", "lastName", "phone", "shippingAddress", "billingAddress")


def json_safe(value: Any) -> Any:
    """A stored value as plain JSON: ids and money as strings, times as ISO-8601 (UTC)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Decimal128):
        return format(value.to_decimal(), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return value


def _address_of(contact: Doc) -> dict[str, Any]:
    """Messages to the person: by contact, or by address for those sent before the contact existed.

    Both by index: (shopId, contactId, createdAt) and (shopId, toKey), the
    address in the contact's `emailKey` form (a case-insensitive regex on
    `to` could use no index and read every message of the shop).
    """
    return {"$or": [{"contactId": contact["_id"]}, {"toKey": contact["emailKey"]}]}


def _orders_of(contact: Doc) -> dict[str, Any]:
    # Orders unlinked by an earlier delete of this person still carry the address;
    # an order linked to another contact is that contact's, whatever its email.
    # Indexed both ways: (shopId, contactId, ...) and (shopId, emailKey).
    return {
        "$or": [{"contactId": contact["_id"]}, {"contactId": None, "emailKey": contact["emailKey"]}]
    }


async def data_export(
    database: Database, shop_id: str, contact_id: ObjectId
) -> dict[str, Any] | None:
    """Everything stored about one person, as JSON; None when the shop has no such contact."""
    contact = await database.contacts.find_one({"shopId": shop_id, "_id": contact_id})
    if contact is None:
        return None
    entries = list(contact.pop("activity", None) or [])
    async for bucket in database.activity_archive.find(
        {"shopId": shop_id, "contactId": contact_id}
    ):
        entries.extend(bucket.get("entries") or [])
    entries.sort(key=activity.sort_key, reverse=True)
    orders = await database.orders.find(
        {"shopId": shop_id, **_orders_of(contact)}, sort=[("createdAt", 1), ("_id", 1)]
    ).to_list()
    messages = await database.messages.find(
        {"shopId": shop_id, **_address_of(contact)}, sort=[("createdAt", 1), ("_id", 1)]
    ).to_list()
    contracts = await database.subscription_contracts.find(
        {"shopId": shop_id, **_orders_of(contact)}, sort=[("createdAt", 1), ("_id", 1)]
    ).to_list()
    return json_safe(
        {
            "exportedAt": now(),
            "contact": contact,
            "activity": entries,
            "notes": [e for e in entries if e.get("kind") == "NOTE"],
            "orders": orders,
            "messages": messages,
            "subscriptionContracts": contracts,
            "consentHistory": (contact.get("consent") or {}).get("history") or [],
        }
    )


def erased_email() -> str:
    return f"erased-{secrets.token_hex(12)}@{ERASED_DOMAIN}"


async def erase_contact(database: Database, shop_id: str, contact_id: ObjectId | None) -> ObjectId:
    """Erase the person; NOT_FOUND (nothing changed) when the shop has no such contact."""
    if contact_id is None:
        raise not_found(("id",))
    placeholder = erased_email()

    async def work(session: Any) -> ObjectId:
        contact = await database.contacts.find_one(
            {"shopId": shop_id, "_id": contact_id}, {"activity": 0}, session=session
        )
        if contact is None:
            raise not_found(("id",))
        at = now()
        await database.orders.update_many(
            {"shopId": shop_id, **_orders_of(contact)},
            {
                "$set": {
                    "email": placeholder,
                    "emailKey": placeholder,
                    "contactId": None,
                    **dict.fromkeys(ORDER_PERSONAL_FIELDS),
                    "erasedAt": at,
                    "updatedAt": at,
                },
            },
            session=session,
        )
        # Contracts stay for the books like orders, without the person (same placeholder).
        await database.subscription_contracts.update_many(
            {"shopId": shop_id, **_orders_of(contact)},
            {
                "$set": {
                    "email": placeholder,
                    "emailKey": placeholder,
                    "contactId": None,
                    "firstName": None,
                    "lastName": None,
                    "erasedAt": at,
                    "updatedAt": at,
                },
            },
            session=session,
        )
        await database.messages.delete_many(
            {"shopId": shop_id, **_address_of(contact)}, session=session
        )
        await database.activity_archive.delete_many(
            {"shopId": shop_id, "contactId": contact_id}, session=session
        )
        await database.contacts.delete_one({"shopId": shop_id, "_id": contact_id}, session=session)
        await contact_erased(database, shop_id, contact, session=session)
        for key in contact.get("labelKeys") or []:
            await database.labels.update_one(
                {"shopId": shop_id, "key": key}, {"$inc": {"contactCount": -1}}, session=session
            )
        return contact_id

    return await activity.in_transaction(database, work)
