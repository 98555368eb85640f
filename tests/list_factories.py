"""Contacts and orders as stored documents.

For the tests of exports, segments, stats, duplicates, merges and privacy.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from conftest import SHOP

from resolvers.contacts import new_contact
from resolvers.validation import email_key

T0 = dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.UTC)


def at(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def contact_doc(
    email: str,
    *,
    shop: str = SHOP,
    kind: str | None = None,
    orders: int = 0,
    spent: str = "0",
    labels: list[str] | None = None,
    created: dt.datetime = T0,
    state: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A contact as `new_contact` builds it; `fields` are stored as given (camelCase)."""
    details = {
        k: fields.pop(k)
        for k in list(fields)
        if k in {"firstName", "lastName", "phone", "company", "shippingAddress", "billingAddress"}
    }
    doc = new_contact(
        shop,
        email,
        email_key(email),
        kind or ("CUSTOMER" if orders else "LEAD"),
        details,
        created,
        labels=labels,
    )
    doc.update(orderCount=orders, totalSpent=Decimal128(spent), **fields)
    if state is not None:
        doc["consent"] = {"state": state, "history": []}
    return doc


async def add_contacts(database: Any, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    await database.contacts.insert_many(list(docs))
    return list(docs)


def order_doc(
    contact: dict[str, Any],
    total: str,
    *,
    status: str = "OPEN",
    placed: dt.datetime = T0,
    number: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An order in the agreed shape, for a stored contact."""
    amount = Decimal128(Decimal(total))
    zero = Decimal128("0")
    oid = ObjectId()
    doc: dict[str, Any] = {
        "_id": oid,
        "shopId": contact["shopId"],
        "externalId": number or f"ext-{oid}",
        "number": number or str(oid)[-6:],
        "status": status,
        "email": contact["email"],
        "emailKey": contact["emailKey"],
        "contactId": contact["_id"],
        "firstName": contact.get("firstName"),
        "lastName": contact.get("lastName"),
        "phone": contact.get("phone"),
        "placedAt": placed if status != "DRAFT" else None,
        "createdAt": placed,
        "updatedAt": placed,
        "currency": "EUR",
        "subtotal": amount,
        "shipping": zero,
        "tax": zero,
        "discount": zero,
        "total": amount,
        "refunded": zero,
        "lineItems": [
            {
                "title": "Thing",
                "sku": "T-1",
                "quantity": 1,
                "unitPrice": amount,
                "total": amount,
                "requiresShipping": True,
            }
        ],
        "shippingAddress": contact.get("shippingAddress"),
        "billingAddress": contact.get("billingAddress"),
        "acceptsMarketing": False,
        "hasAccount": False,
    }
    if status == "DRAFT":
        del doc["externalId"]
    doc.update(fields)
    return doc
