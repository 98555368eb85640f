"""How an order is stored, and how it shows in its contact's activity log.

Money is Decimal128. `externalId` is the shop's own id of the order, a
string. A draft has none from the shop, so it carries its own `_id` there
(an ObjectId, never a string): every order then has a distinct key in the
plain unique (shopId, externalId) index, which serves every look-up by
externalId (a partial index, which would let drafts go without one, is not
used for them: neither MongoDB's planner nor the embedded server can prove
`externalId: "A-1"` lies inside `{externalId: {$type: "string"}}`), and no id
a shop sends can ever name a draft. Clients never see that key: see
`shop_external_id`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

from loaders.mongo import Doc
from resolvers import activity
from resolvers.order_input import ZERO, Amounts, CheckedDraft, CheckedOrder


def d128(value: Decimal) -> Decimal128:
    return Decimal128(value)


def decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value or 0)


def _line_doc(line: Doc) -> Doc:
    return {**line, "unitPrice": d128(line["unitPrice"]), "total": d128(line["total"])}


def money_fields(amounts: Amounts, refunded: Decimal) -> Doc:
    return {
        "currency": amounts.currency,
        "subtotal": d128(amounts.subtotal),
        "shipping": d128(amounts.shipping),
        "tax": d128(amounts.tax),
        "discount": d128(amounts.discount),
        "total": d128(amounts.total),
        "refunded": d128(refunded),
        "lineItems": [_line_doc(line) for line in amounts.lines],
    }


def order_doc(shop_id: str, checked: CheckedOrder, contact_id: ObjectId, at: dt.datetime) -> Doc:
    """A reported order as stored."""
    return {
        "_id": ObjectId(),
        "shopId": shop_id,
        "externalId": checked.external_id,
        "number": checked.number,
        "status": checked.status,
        "email": checked.email,
        "emailKey": checked.email_key,
        "contactId": contact_id,
        "firstName": checked.first_name,
        "lastName": checked.last_name,
        "phone": checked.phone,
        "placedAt": checked.placed_at,
        "createdAt": at,
        "updatedAt": at,
        **money_fields(checked.amounts, checked.refunded or ZERO),
        "shippingAddress": checked.shipping_address,
        "billingAddress": checked.billing_address,
        "acceptsMarketing": checked.accepts_marketing,
        "hasAccount": checked.has_account,
        # The shop's own time of the report applied last: older reports change nothing.
        "shopUpdatedAt": checked.updated_at,
    }


def draft_doc(shop_id: str, contact: Doc, draft: CheckedDraft, author: str, at: dt.datetime) -> Doc:
    """A draft as stored: the contact's details, no placement time, its own id as its key."""
    order_id = ObjectId()
    return {
        "_id": order_id,
        "shopId": shop_id,
        "externalId": order_id,  # see the module's docstring
        "number": None,
        "status": "DRAFT",
        "email": contact["email"],
        "emailKey": contact["emailKey"],
        "contactId": contact["_id"],
        "firstName": contact.get("firstName"),
        "lastName": contact.get("lastName"),
        "phone": contact.get("phone"),
        "placedAt": None,
        "createdAt": at,
        "updatedAt": at,
        **money_fields(draft.amounts, ZERO),
        "shippingAddress": draft.shipping_address,
        "billingAddress": None,
        "acceptsMarketing": None,
        "hasAccount": None,
        "createdBy": author,
    }


def shop_external_id(order: Doc) -> str | None:
    """The order's id as the shop sent it; None for drafts, whose key is their own id."""
    value = order.get("externalId")
    return value if isinstance(value, str) else None


def order_label(order: Doc) -> str:
    name = order.get("number") or shop_external_id(order) or "draft"
    return f"Order {name}: {decimal(order['total'])} {order.get('currency') or ''}".rstrip()


def placed_entries(order: Doc) -> list[Doc]:
    """The log entries of a reported order: placed, and canceled when it came in canceled."""
    entries = [
        activity.entry(
            "ORDER_PLACED", text=order_label(order), order_id=order["_id"], at=order["placedAt"]
        )
    ]
    if order["status"] == "CANCELED":
        entries.append(
            activity.entry("ORDER_CANCELED", text=order_label(order), order_id=order["_id"])
        )
    return entries
