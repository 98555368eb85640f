"""Fake orders for `contactgraph seed` and the benchmarks, written in bulk with their statistics.

The contacts' statistics and logs are what recording the same orders one
by one would have produced (oldest first), computed here and written in one
bulk update per call instead of one transaction per order.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from decimal import Decimal
from typing import Any

from bson import ObjectId
from pymongo import InsertOne, ReturnDocument, UpdateOne

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.contact_counts import count_contacts
from resolvers.order_docs import d128, money_fields, placed_entries
from resolvers.order_input import ZERO, Amounts
from resolvers.order_stats import counted

SEED_PRODUCTS = [
    ("Espresso beans 1 kg", "COF-1000", Decimal("18.90"), True),
    ("Ceramic mug", "MUG-01", Decimal("12.50"), True),
    ("Tea sampler", "TEA-SMP", Decimal("24.00"), True),
    ("Gift card", "GIFT-25", Decimal("25.00"), False),
    ("Brewing course (online)", "CRS-ONL", Decimal("49.00"), False),
    ("Grinder", "GRN-200", Decimal("129.99"), True),
]


def _seed_order(
    shop_id: str, contact: Doc, placed: dt.datetime, currency: str, rng: random.Random
) -> Doc:
    lines: list[Doc] = []
    for title, sku, price, ships in rng.sample(SEED_PRODUCTS, k=rng.randint(1, 3)):
        quantity = rng.randint(1, 3)
        lines.append(
            {
                "title": title,
                "sku": sku,
                "quantity": quantity,
                "unitPrice": price,
                "total": price * quantity,
                "requiresShipping": ships,
            }
        )
    subtotal = sum((line["total"] for line in lines), ZERO)
    amounts = Amounts(currency, lines, subtotal, ZERO, ZERO, ZERO, ZERO)
    amounts.shipping = Decimal("4.90") if amounts.ships else ZERO
    amounts.tax = (subtotal * Decimal("0.19")).quantize(Decimal("0.01"))
    amounts.total = subtotal + amounts.shipping + amounts.tax
    order_id = ObjectId()
    return {
        "_id": order_id,
        "shopId": shop_id,
        "externalId": f"seed-{order_id}",
        "number": f"S-{str(order_id)[-8:].upper()}",
        "status": rng.choices(["FULFILLED", "OPEN", "CANCELED"], weights=[80, 15, 5])[0],
        "email": contact["email"],
        "emailKey": contact["emailKey"],
        "contactId": contact["_id"],
        "firstName": contact.get("firstName"),
        "lastName": contact.get("lastName"),
        "phone": contact.get("phone"),
        "placedAt": placed,
        "createdAt": placed,
        "updatedAt": placed,
        **money_fields(amounts, ZERO),
        "shippingAddress": contact.get("shippingAddress") if amounts.ships else None,
        "billingAddress": None,
        "acceptsMarketing": False,
        "hasAccount": False,
    }


def _seed_statistics(orders: list[Doc]) -> Doc:
    """The contact fields a run of orders (oldest first) produces, as recording them would."""
    counting = [o for o in orders if counted(o["status"])]
    shipped = [o for o in orders if o["shippingAddress"]]
    return {
        "kind": "CUSTOMER",
        "orderCount": len(counting),
        "totalSpent": d128(sum((o["total"].to_decimal() for o in counting), ZERO)),
        "shipAt": shipped[-1]["placedAt"] if shipped else None,
        "orderRev": len(orders),
        # Only with a counted order: never null (see resolvers.contacts.BOUND_FIELDS).
        **(
            {"firstOrderAt": counting[0]["placedAt"], "lastOrderAt": counting[-1]["placedAt"]}
            if counting
            else {}
        ),
    }


async def seed_orders(
    database: Database, shop_id: str, contact_docs: list[Doc], per_contact: int, rng: random.Random
) -> int:
    """`per_contact` fake orders for each of the (just inserted) contacts, with their statistics.

    Everything is written in bulk, in one transaction: one insert of the
    orders, one bulk update of the contacts and the shop's contact counters
    (the leads among them are customers now).
    """
    if per_contact <= 0 or not contact_docs:
        return 0
    shop = await database.shops.find_one_and_update(
        {"_id": shop_id},
        [{"$set": {"currency": {"$ifNull": ["$currency", "EUR"]}}}],
        projection={"currency": 1},
        return_document=ReturnDocument.AFTER,
    )
    currency = (shop or {}).get("currency") or "EUR"
    at = utc_now()
    two_years = 2 * 365 * 24 * 60
    orders: list[Doc] = []
    updates: list[UpdateOne] = []
    for contact in contact_docs:
        times = sorted(
            at - dt.timedelta(minutes=rng.randint(1, two_years)) for _ in range(per_contact)
        )
        own = [_seed_order(shop_id, contact, placed, currency, rng) for placed in times]
        orders.extend(own)
        entries = [entry for order in own for entry in placed_entries(order)]
        update = activity.merge_updates({"$set": _seed_statistics(own)}, activity.push(entries))
        updates.append(UpdateOne({"shopId": shop_id, "_id": contact["_id"]}, update))
    # Leads among them become customers: the shop's counters follow, in the same transaction.
    converted = Counter(doc.get("kind") for doc in contact_docs if doc.get("kind") != "CUSTOMER")
    deltas: dict[str, int] = {"CUSTOMER": sum(converted.values())}
    deltas.update({kind: -n for kind, n in converted.items() if kind is not None})

    async def work(session: Any) -> None:
        await database.orders.bulk_write(
            [InsertOne(order) for order in orders], ordered=False, session=session
        )
        await database.contacts.bulk_write(updates, ordered=False, session=session)
        await count_contacts(database, shop_id, deltas, session=session)

    await activity.in_transaction(database, work)
    return len(orders)
