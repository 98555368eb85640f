"""Reads of orders: by id, a contact's order history a page at a time, and its size.

Order history is newest first, by (placedAt desc, _id desc); drafts have no
placedAt and come last. The paging and counting are a contact's records
like any other (loaders/contact_records.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from bson import ObjectId

from loaders.contact_records import CountKey, PageKey, Records
from loaders.mongo import Doc

SORT_FIELD = "placedAt"
DEFAULT_PAGE = 20
ORDERS = Records("orders", SORT_FIELD, DEFAULT_PAGE)

# One contact's order page, and the key of its count.
OrdersKey = PageKey
OrderCountKey = CountKey


def order_statuses(include_canceled: bool, include_drafts: bool) -> tuple[str, ...]:
    """The statuses an order history shows; canceled orders are hidden unless asked for."""
    statuses = ["OPEN", "FULFILLED"]
    if include_canceled:
        statuses.append("CANCELED")
    if include_drafts:
        statuses.append("DRAFT")
    return tuple(statuses)


def history_stages(
    shop_id: str, contact_ids: Sequence[ObjectId], statuses: Sequence[str]
) -> list[Doc]:
    """The `$match` stages selecting these contacts' orders in these statuses."""
    return ORDERS.stages(shop_id, contact_ids, statuses)
