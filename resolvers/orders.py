"""Orders: recording them (idempotently), cancelling, drafts, and the contact statistics they drive.

A recorded order lands on the contact with its normalized email, or makes
a new CUSTOMER. The order document is written first: its unique
(shopId, externalId) index decides whether this is a new order or a replay,
so the contact's statistics and log change exactly once per order. The
contact is then changed in one atomic write whose filter carries every
assumption the write was computed from (revision, lock, newest order,
lead); when another write got there first the contact is read again and the
write recomputed. Statistics only ever move by `$inc` (exact with
Decimal128), `$min` and `$max`, except when an order stops counting: then
first/last order times are recomputed and written with a compare-and-set on
`orderRev`, which every statistics write bumps.

The two writes are not one transaction (that would cost a fourth command
per order). If the second never happens, the order is stored but not
counted; the shop, having had no answer, reports the order again, and that
report (or a cancellation) counts it: see `land_if_lost`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from pymongo import InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from loaders.contacts import LIST_PROJECTION
from loaders.mongo import Database, Doc
from loaders.orders import history_stages
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.consent import ConsentEvent, record_consent
from resolvers.contacts import derived_fields, new_contact, set_or_unset
from resolvers.errors import Field, Refused, not_found, refuse
from resolvers.validation import NAME_MAX, Checker

log = logging.getLogger("contactgraph")

STATUSES = ("DRAFT", "OPEN", "FULFILLED", "CANCELED")
RECORDABLE = ("OPEN", "FULFILLED", "CANCELED")
# Orders that count in a contact's statistics; canceled and draft ones do not.
COUNTED = ("OPEN", "FULFILLED")

EXTERNAL_ID_MAX = 200
NUMBER_MAX = 100
TITLE_MAX = 500
SKU_MAX = 100
LINE_ITEMS_MAX = 500
QUANTITY_MAX = 100_000
# Shops' clocks drift; an order "placed" a little in the future is tolerated.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
CURRENCY = re.compile(r"[A-Z]{3}")
ZERO = Decimal(0)

# A contact write retried this often has lost that many races in a row; past
# it something is wrong, and the caller gets an error instead of a spin.
MAX_ATTEMPTS = 200
# An order whose contact write never happened (the process died between the
# two writes, or the write kept failing) is counted by the next report of it
# (shops resend until they get an answer) or by its cancellation, once it is
# this old: a recording still under way finishes in far less.
LANDING_GRACE = dt.timedelta(seconds=60)
LANDING_WAIT_SECONDS = 3.0


class OrderInFlight(Exception):
    """A report or cancellation of an order whose first recording has not finished: try later."""


# ---------------------------------------------------------------- input


@dataclass
class LineItemData:
    title: str | None
    quantity: int | None
    unit_price: Decimal | None
    sku: str | None = None
    requires_shipping: bool | None = True


@dataclass
class OrderData:
    """What the shop reports about an order, as plain values."""

    external_id: str | None
    email: str | None
    currency_code: str | None
    line_items: Sequence[LineItemData]
    number: str | None = None
    status: str | None = "OPEN"
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    placed_at: dt.datetime | None = None
    shipping: Decimal | None = ZERO
    tax: Decimal | None = ZERO
    discount: Decimal | None = ZERO
    total: Decimal | None = None
    refunded: Decimal | None = None
    shipping_address: Mapping[str, Any] | None = None
    billing_address: Mapping[str, Any] | None = None
    accepts_marketing: bool | None = None
    has_account: bool | None = None
    updated_at: dt.datetime | None = None  # when the shop last changed the order


@dataclass
class DraftData:
    """A draft order made by staff for a contact."""

    line_items: Sequence[LineItemData]
    currency_code: str | None = None
    shipping: Decimal | None = ZERO
    tax: Decimal | None = ZERO
    discount: Decimal | None = ZERO
    shipping_address: Mapping[str, Any] | None = None


@dataclass
class Amounts:
    currency: str | None
    lines: list[Doc]
    subtotal: Decimal
    shipping: Decimal
    tax: Decimal
    discount: Decimal
    total: Decimal

    @property
    def ships(self) -> bool:
        return any(line["requiresShipping"] for line in self.lines)


@dataclass
class CheckedOrder:
    external_id: str
    email: str
    email_key: str
    status: str
    number: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    placed_at: dt.datetime
    amounts: Amounts
    refunded: Decimal | None
    shipping_address: dict[str, str] | None
    billing_address: dict[str, str] | None
    accepts_marketing: bool
    has_account: bool | None
    given: dict[str, Any] = field(default_factory=dict)
    updated_at: dt.datetime | None = None


def _currency(check: Checker, path: Field, value: str | None, *, required: bool) -> str | None:
    if value is None:
        if required:
            check.add(path, "Currency code is required.", "REQUIRED")
        return None
    if not CURRENCY.fullmatch(value):
        check.add(
            path, "Currency code must be three upper-case letters (ISO 4217), e.g. EUR.", "INVALID"
        )
        return None
    return value


def _amounts(
    check: Checker,
    prefix: Field,
    currency: str | None,
    lines: Sequence[LineItemData],
    shipping: Decimal | None,
    tax: Decimal | None,
    discount: Decimal | None,
) -> Amounts | None:
    """Line items and charges checked, with exact line totals and the order total."""
    before = len(check.problems)
    if not lines:
        check.add((*prefix, "lineItems"), "An order needs at least one line item.", "REQUIRED")
    elif len(lines) > LINE_ITEMS_MAX:
        check.add(
            (*prefix, "lineItems"),
            f"An order has at most {LINE_ITEMS_MAX} line items.",
            "LIMIT_EXCEEDED",
        )
        lines = []
    docs: list[Doc] = []
    subtotal = ZERO
    for index, line in enumerate(lines):
        path = (*prefix, "lineItems", index)
        title = check.text((*path, "title"), line.title, TITLE_MAX, required=True)
        sku = check.text((*path, "sku"), line.sku, SKU_MAX)
        quantity = line.quantity
        if quantity is None:
            check.add((*path, "quantity"), "Quantity is required.", "REQUIRED")
        elif isinstance(quantity, bool) or not 1 <= quantity <= QUANTITY_MAX:
            check.add(
                (*path, "quantity"), f"Quantity must be between 1 and {QUANTITY_MAX}.", "INVALID"
            )
            quantity = None
        price = check.money((*path, "unitPrice"), line.unit_price, required=True)
        if title is None or quantity is None or price is None:
            continue
        line_total = price * quantity
        subtotal += line_total
        docs.append(
            {
                "title": title,
                "sku": sku,
                "quantity": quantity,
                "unitPrice": price,
                "total": line_total,
                "requiresShipping": line.requires_shipping is not False,
            }
        )
    charges = {}
    for name, value in (("shipping", shipping), ("tax", tax), ("discount", discount)):
        charges[name] = check.money((*prefix, name), ZERO if value is None else value)
    if len(check.problems) > before:
        return None
    total = subtotal + charges["shipping"] + charges["tax"] - charges["discount"]  # type: ignore[operator]
    if total < 0:
        check.add(
            (*prefix, "discount"),
            "Discount is larger than the order's lines, shipping and tax.",
            "INVALID",
        )
        return None
    return Amounts(
        currency=currency,
        lines=docs,
        subtotal=subtotal,
        shipping=charges["shipping"],  # type: ignore[arg-type]
        tax=charges["tax"],  # type: ignore[arg-type]
        discount=charges["discount"],  # type: ignore[arg-type]
        total=total,
    )


def check_order(data: OrderData, at: dt.datetime | None = None) -> CheckedOrder:
    """Validate everything the shop sent; Refused with every problem at once."""
    check = Checker()
    at = at or utc_now()
    p: Field = ("input",)
    external_id = check.text((*p, "externalId"), data.external_id, EXTERNAL_ID_MAX, required=True)
    number = check.text((*p, "number"), data.number, NUMBER_MAX)
    status = data.status or "OPEN"
    if status not in RECORDABLE:
        check.add((*p, "status"), "Draft orders are made with draftOrderCreate.", "INVALID")
    email = check.email((*p, "email"), data.email, required=True)
    first_name = check.text((*p, "firstName"), data.first_name, NAME_MAX)
    last_name = check.text((*p, "lastName"), data.last_name, NAME_MAX)
    shipping_address = check.address((*p, "shippingAddress"), data.shipping_address)
    billing_address = check.address((*p, "billingAddress"), data.billing_address)
    region = (shipping_address or {}).get("countryCode") or (billing_address or {}).get(
        "countryCode"
    )
    phone = check.phone((*p, "phone"), data.phone, region)
    placed_at = data.placed_at or at
    if placed_at > at + FUTURE_TOLERANCE:
        check.add((*p, "placedAt"), "An order cannot be placed in the future.", "INVALID")
    # A time far ahead would hold back every later report of the order.
    if data.updated_at is not None and data.updated_at > at + FUTURE_TOLERANCE:
        check.add((*p, "updatedAt"), "An order cannot be changed in the future.", "INVALID")
    currency = _currency(check, (*p, "currencyCode"), data.currency_code, required=True)
    amounts = _amounts(check, p, currency, data.line_items, data.shipping, data.tax, data.discount)
    total_given = check.money((*p, "total"), data.total)
    if amounts is not None and total_given is not None and total_given != amounts.total:
        check.add(
            (*p, "total"),
            f"Total {total_given} does not equal lines + shipping + tax - discount "
            f"({amounts.total}).",
            "INVALID",
        )
    refunded = check.money((*p, "refunded"), data.refunded)
    if amounts is not None and refunded is not None and refunded > amounts.total:
        check.add((*p, "refunded"), "Refunded amount is larger than the order total.", "INVALID")
    if not check.ok:
        raise Refused(check.problems)
    assert external_id is not None and email is not None and amounts is not None
    if total_given is not None:
        amounts.total = total_given  # equal in value; keep the shop's own spelling
    return CheckedOrder(
        external_id=external_id,
        email=email[0],
        email_key=email[1],
        status=status,
        number=number,
        first_name=first_name,
        last_name=last_name,
        phone=phone,
        placed_at=placed_at,
        amounts=amounts,
        refunded=refunded,
        shipping_address=shipping_address,
        billing_address=billing_address,
        accepts_marketing=data.accepts_marketing is True,
        has_account=data.has_account,
        updated_at=data.updated_at,
    )


# ---------------------------------------------------------------- documents


def _d128(value: Decimal) -> Decimal128:
    return Decimal128(value)


def _line_doc(line: Doc) -> Doc:
    return {**line, "unitPrice": _d128(line["unitPrice"]), "total": _d128(line["total"])}


def _money_fields(amounts: Amounts, refunded: Decimal) -> Doc:
    return {
        "currency": amounts.currency,
        "subtotal": _d128(amounts.subtotal),
        "shipping": _d128(amounts.shipping),
        "tax": _d128(amounts.tax),
        "discount": _d128(amounts.discount),
        "total": _d128(amounts.total),
        "refunded": _d128(refunded),
        "lineItems": [_line_doc(line) for line in amounts.lines],
    }


def order_doc(shop_id: str, checked: CheckedOrder, contact_id: ObjectId, at: dt.datetime) -> Doc:
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
        **_money_fields(checked.amounts, checked.refunded or ZERO),
        "shippingAddress": checked.shipping_address,
        "billingAddress": checked.billing_address,
        "acceptsMarketing": checked.accepts_marketing,
        "hasAccount": checked.has_account,
        # The shop's own time of the report applied last: older reports change nothing.
        "shopUpdatedAt": checked.updated_at,
    }


def _order_label(order: Doc) -> str:
    name = order.get("number") or order.get("externalId") or "draft"
    total = (
        order["total"].to_decimal() if isinstance(order["total"], Decimal128) else order["total"]
    )
    return f"Order {name}: {total} {order.get('currency') or ''}".rstrip()


def _counted(status: str | None) -> bool:
    return status in COUNTED


def _stats_update(order: Doc, sign: int) -> Doc:
    """Statistics moves for an order starting (+1) or ending (-1) to count."""
    total = order["total"].to_decimal()
    update: Doc = {"$inc": {"orderCount": sign, "totalSpent": _d128(total * sign), "orderRev": 1}}
    if sign > 0:
        update["$min"] = {"firstOrderAt": order["placedAt"]}
        update["$max"] = {"lastOrderAt": order["placedAt"]}
    return update


# ---------------------------------------------------------------- currency


async def settle_currency(
    database: Database, shop_id: str, known: str | None, wanted: str | None, path: Field
) -> str:
    """The shop's one currency, claimed by this order when the shop has none yet.

    `known` is the currency the caller already knows (the request's shop);
    once set it never changes, so a known currency costs no command. INVALID
    when the order's currency is another.
    """
    currency = known
    if currency is None:
        if wanted is None:
            doc = await database.shops.find_one({"_id": shop_id}, {"currency": 1})
        else:
            # Atomic "set if unset": of two first orders in different currencies one wins.
            doc = await database.shops.find_one_and_update(
                {"_id": shop_id},
                [{"$set": {"currency": {"$ifNull": ["$currency", wanted]}}}],
                projection={"currency": 1},
                return_document=ReturnDocument.AFTER,
            )
        currency = (doc or {}).get("currency")
    if wanted is None:
        if currency is None:
            raise refuse(path, "The shop has no currency yet: give a currency code.", "REQUIRED")
        return currency
    if currency != wanted:
        raise refuse(path, f"This shop records orders in {currency}, not {wanted}.", "INVALID")
    return currency


# ---------------------------------------------------------------- recording


@dataclass
class Recorded:
    order: Doc
    contact: Doc | None
    created: bool  # a new order (False: a replay, changed or not)


async def record_order(
    database: Database, shop_id: str, data: OrderData, *, shop_currency: str | None = None
) -> Recorded:
    """Record an order the shop reports; idempotent on its externalId.

    A new order: one read of the contact, the order insert, one contact
    write. A replay changes nothing unless its status or refunded amount is
    new; then the order and the statistics follow.
    """
    at = utc_now()
    checked = check_order(data, at)
    await settle_currency(
        database, shop_id, shop_currency, checked.amounts.currency, ("input", "currencyCode")
    )
    contact = await database.contacts.find_one(
        {"shopId": shop_id, "emailKey": checked.email_key}, LIST_PROJECTION
    )
    order = order_doc(shop_id, checked, contact["_id"] if contact else ObjectId(), at)
    try:
        await database.orders.insert_one(order)
    except DuplicateKeyError:
        return await _replay(database, shop_id, checked, contact)
    after = await _land_order(database, shop_id, order, checked, contact)
    after = await _after_landing(database, shop_id, checked, after)
    return Recorded(order=order, contact=after, created=True)


async def _after_landing(
    database: Database, shop_id: str, checked: CheckedOrder, after: Doc
) -> Doc:
    """Consent given at checkout, and the log's bound: what follows an order's landing."""
    if checked.accepts_marketing:
        event = ConsentEvent(
            state="SUBSCRIBED",
            at=checked.placed_at,
            source="CHECKOUT",
            opt_in_level="SINGLE_OPT_IN",
            evidence=checked.external_id,
        )
        after = await record_consent(database, shop_id, after["_id"], event) or after
    await activity.spill_overflow(database, shop_id, after)
    return after


def _placed_entries(order: Doc) -> list[Doc]:
    entries = [
        activity.entry(
            "ORDER_PLACED", text=_order_label(order), order_id=order["_id"], at=order["placedAt"]
        )
    ]
    if order["status"] == "CANCELED":
        entries.append(
            activity.entry("ORDER_CANCELED", text=_order_label(order), order_id=order["_id"])
        )
    return entries


def _new_customer(shop_id: str, order: Doc, checked: CheckedOrder, at: dt.datetime) -> Doc:
    details: Doc = {
        "firstName": checked.first_name,
        "lastName": checked.last_name,
        "phone": checked.phone,
        "billingAddress": checked.billing_address,
        "hasAccount": checked.has_account is True,
        "orderRev": 1,
    }
    if checked.amounts.ships and checked.shipping_address:
        details["shippingAddress"] = checked.shipping_address
        details["shipAt"] = checked.placed_at
    if _counted(order["status"]):
        details.update(
            orderCount=1,
            totalSpent=_d128(checked.amounts.total),
            firstOrderAt=checked.placed_at,
            lastOrderAt=checked.placed_at,
        )
    doc = new_contact(
        shop_id,
        checked.email,
        checked.email_key,
        "CUSTOMER",
        details,
        at,
        entries=_placed_entries(order),
    )
    doc["_id"] = order["contactId"]
    return doc


def _newer_than(name: str, placed_at: dt.datetime) -> Doc:
    return {"$or": [{name: None}, {name: {"$lte": placed_at}}]}


def _contact_write(
    contact: Doc, order: Doc, checked: CheckedOrder, at: dt.datetime
) -> tuple[Doc, Doc]:
    """(extra filter, update) that lands a new order on an existing contact.

    The filter holds what the update was computed from, so a write that
    raced with another fails instead of undoing it.
    """
    conditions: list[Doc] = []
    entries = _placed_entries(order)
    sets: Doc = {"updatedAt": at}
    if contact.get("kind") != "CUSTOMER":
        sets["kind"] = "CUSTOMER"
        entries.append(activity.entry("CONVERTED_TO_CUSTOMER", text=_order_label(order), at=at))
        conditions.append({"kind": contact.get("kind")})
    placed = checked.placed_at
    # Name, phone, billing address and the account flag come from the newest order.
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
            if details.keys() & {"shippingAddress", "shipAt"}:
                conditions.append(_newer_than("shipAt", placed))
    if details:
        conditions.append({"detailsLocked": {"$ne": True}})
        sets.update(details)
    account_changes = (
        newest
        and checked.has_account is not None
        and bool(contact.get("hasAccount")) != checked.has_account
    )
    if account_changes:
        sets["hasAccount"] = checked.has_account
    if newest and (account_changes or details.keys() - {"shippingAddress", "shipAt"}):
        conditions.append(_newer_than("lastOrderAt", placed))
    update: Doc = {"$set": sets}
    if details.keys() & {"firstName", "lastName"}:
        # Name sort key and search terms follow the name: computed here from
        # the revision read, so the write only lands on that revision.
        sets.update(derived_fields({**contact, **details}))
        conditions.append({"rev": contact.get("rev")})  # None also matches a missing field
        update["$inc"] = {"rev": 1}
    if _counted(order["status"]):
        update = activity.merge_updates(update, _stats_update(order, +1))
    update = activity.merge_updates(update, activity.push(entries))
    extra: Doc = {"$and": conditions} if conditions else {}
    return extra, update


async def _land_order(
    database: Database, shop_id: str, order: Doc, checked: CheckedOrder, contact: Doc | None
) -> Doc:
    """Apply a just-inserted order to its contact (made when missing), exactly once."""
    at = order["createdAt"]
    for attempt in range(MAX_ATTEMPTS):
        if contact is None:
            doc = _new_customer(shop_id, order, checked, at)
            if attempt:  # the id the order carries may belong to a contact deleted meanwhile
                doc["_id"] = ObjectId()
            await _link(database, shop_id, order, doc["_id"])
            try:
                await database.contacts.insert_one(doc)
            except DuplicateKeyError:
                # Made meanwhile by a concurrent order or form: land on that one.
                contact = await database.contacts.find_one(
                    {"shopId": shop_id, "emailKey": checked.email_key}, LIST_PROJECTION
                )
                continue
            return {k: v for k, v in doc.items() if k not in LIST_PROJECTION}
        await _link(database, shop_id, order, contact["_id"])
        extra, update = _contact_write(contact, order, checked, at)
        after = await database.contacts.find_one_and_update(
            {"shopId": shop_id, "_id": contact["_id"], **extra},
            update,
            projection=LIST_PROJECTION,
            return_document=ReturnDocument.AFTER,
        )
        if after is not None:
            return after
        contact = await database.contacts.find_one(
            {"shopId": shop_id, "_id": contact["_id"]}, LIST_PROJECTION
        )
        if contact is None:  # deleted meanwhile: the email decides again
            contact = await database.contacts.find_one(
                {"shopId": shop_id, "emailKey": checked.email_key}, LIST_PROJECTION
            )
        if attempt > 2:
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
    raise RuntimeError("the contact kept changing while an order was recorded")


async def _link(database: Database, shop_id: str, order: Doc, contact_id: ObjectId) -> None:
    """Point the order at the contact it is about to land on, when that is not the one it names.

    Happens only in races: two first orders of a new email, or a contact
    deleted while its order was being recorded. Before the contact write, so
    the order always names the contact whose log has (or will have) its
    entry: deleting, erasing and merging, which find orders by `contactId`,
    then never miss it.
    """
    if order["contactId"] != contact_id:
        await database.orders.update_one(
            {"shopId": shop_id, "_id": order["_id"]}, {"$set": {"contactId": contact_id}}
        )
        order["contactId"] = contact_id


async def _replay(
    database: Database, shop_id: str, checked: CheckedOrder, known: Doc | None
) -> Recorded:
    existing = await database.orders.find_one(
        {"shopId": shop_id, "externalId": checked.external_id}
    )
    if existing is None:
        raise RuntimeError("an order reported as a duplicate could not be read")
    repaired = await land_if_lost(database, shop_id, existing)
    if repaired is not None:
        known = repaired
    order, contact = await change_order(
        database,
        shop_id,
        existing,
        status=checked.status,
        refunded=checked.refunded,
        reported_at=checked.updated_at,
    )
    if contact is None and known is not None and known["_id"] == order.get("contactId"):
        contact = known  # read by email just before: unchanged by a replay that changed nothing
    if contact is None and order.get("contactId") is not None:
        contact = await database.contacts.find_one(
            {"shopId": shop_id, "_id": order["contactId"]}, LIST_PROJECTION
        )
    return Recorded(order=order, contact=contact, created=False)


# ---------------------------------------------------------------- orders never counted


def _decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value or 0)


def _checked_from_order(order: Doc) -> CheckedOrder:
    """The stored order in the shape its first recording had checked it."""
    lines = [
        {**line, "unitPrice": _decimal(line["unitPrice"]), "total": _decimal(line["total"])}
        for line in order.get("lineItems") or []
    ]
    return CheckedOrder(
        external_id=order["externalId"],
        email=order["email"],
        email_key=order["emailKey"],
        status=order["status"],
        number=order.get("number"),
        first_name=order.get("firstName"),
        last_name=order.get("lastName"),
        phone=order.get("phone"),
        placed_at=order["placedAt"],
        amounts=Amounts(
            currency=order.get("currency"),
            lines=lines,
            subtotal=_decimal(order.get("subtotal")),
            shipping=_decimal(order.get("shipping")),
            tax=_decimal(order.get("tax")),
            discount=_decimal(order.get("discount")),
            total=_decimal(order["total"]),
        ),
        refunded=_decimal(order.get("refunded")),
        shipping_address=order.get("shippingAddress"),
        billing_address=order.get("billingAddress"),
        accepts_marketing=bool(order.get("acceptsMarketing")),
        has_account=order.get("hasAccount"),
        updated_at=order.get("shopUpdatedAt"),
    )


class _Landed:
    """The answer of `_landed_on` for an order that has nothing left to land on."""


async def _landed_on(
    database: Database, shop_id: str, order: Doc, session: Any = None
) -> ObjectId | type[_Landed] | None:
    """Where the order landed: the contact whose log names it; None when it never did.

    The order names its contact, but a recording that lost a race may have
    landed it on the contact its email found and died before relinking it,
    so both are looked at. Deleting, erasing and merging contacts change the
    orders in the same transaction (a merge marks them `landedAt`), so an
    order whose contacts do not name it never landed.
    """
    if order.get("landedAt") is not None or order.get("contactId") is None:
        return _Landed  # counted by a repair or a merge, or unlinked on purpose
    candidates = [order["contactId"]]
    for _ in range(2):  # the contact the order names, then the one its email finds
        found = await database.contacts.find_one(
            {"_id": candidates[-1], "shopId": shop_id, "activity.orderId": order["_id"]},
            {"_id": 1},
            session=session,
        )
        if found is not None:
            return found["_id"]
        if len(candidates) > 1:
            break
        by_email = await database.contacts.find_one(
            {"shopId": shop_id, "emailKey": order["emailKey"]}, {"_id": 1}, session=session
        )
        if by_email is None or by_email["_id"] == order["contactId"]:
            break
        candidates.append(by_email["_id"])
    # The buckets' entries are checked here: a filter on them would make the
    # embedded server scan the archive instead of using the contact's index.
    async for bucket in database.activity_archive.find(
        {"shopId": shop_id, "contactId": {"$in": candidates}},
        {"contactId": 1, "entries.orderId": 1},
        session=session,
    ):
        if any(e.get("orderId") == order["_id"] for e in bucket.get("entries") or []):
            return bucket["contactId"]
    return None


class _Raced(Exception):
    """The contact changed between the transaction's read and its write: run it again."""


async def land_if_lost(database: Database, shop_id: str, order: Doc) -> Doc | None:
    """Count a reported order whose contact write never happened; the contact after, else None.

    One read when nothing is wrong (the contact's log names the order);
    more only when it does not, or the entry was archived. An order younger
    than LANDING_GRACE is never landed here: its recording may still be
    under way, so this waits briefly for it and then raises OrderInFlight.
    The landing itself is one transaction that also marks the order `landedAt`,
    so concurrent repairs, cancellations and merges conflict instead of
    counting it twice, and whichever runs second sees what the first did.
    """
    if order.get("externalId") is None or order.get("status") == "DRAFT":
        return None  # drafts land with their creation, in one write
    where = await _landed_on(database, shop_id, order)
    if where is None and utc_now() - order["createdAt"] < LANDING_GRACE:
        # Its first recording may still be under way: wait a little for it,
        # else ask the caller to come back once it is over or known lost.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LANDING_WAIT_SECONDS
        pause = 0.02
        while where is None and loop.time() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
            # Read again: a merge, deletion or erasure may have changed it meanwhile.
            fresh = await database.orders.find_one({"_id": order["_id"], "shopId": shop_id})
            if fresh is None:
                return None
            order.update(fresh)
            where = await _landed_on(database, shop_id, order)
        if where is None:
            raise OrderInFlight("This order is still being recorded; send it again in a minute.")
    if isinstance(where, ObjectId) and where != order["contactId"]:
        # Landed, then the recording died before relinking the order.
        await database.orders.update_one(
            {"_id": order["_id"], "shopId": shop_id, "contactId": order["contactId"]},
            {"$set": {"contactId": where}},
        )
        order["contactId"] = where
    if where is not None:
        return None

    async def land(session: Any) -> tuple[Doc, Doc] | None:
        current = await database.orders.find_one(
            {"_id": order["_id"], "shopId": shop_id}, session=session
        )
        if current is None:
            return None
        if await _landed_on(database, shop_id, current, session) is not None:
            return None  # by a concurrent call, since the look above
        checked = _checked_from_order(current)
        at = utc_now()
        contact = await database.contacts.find_one(
            {"shopId": shop_id, "_id": current["contactId"]}, LIST_PROJECTION, session=session
        ) or await database.contacts.find_one(
            {"shopId": shop_id, "emailKey": current["emailKey"]}, LIST_PROJECTION, session=session
        )
        after: Doc | None
        if contact is None:
            doc = _new_customer(shop_id, current, checked, at)
            await database.contacts.insert_one(doc, session=session)
            after = {k: v for k, v in doc.items() if k not in LIST_PROJECTION}
        else:
            extra, update = _contact_write(contact, current, checked, at)
            after = await database.contacts.find_one_and_update(
                {"shopId": shop_id, "_id": contact["_id"], **extra},
                update,
                projection=LIST_PROJECTION,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if after is None:
                raise _Raced
        current["contactId"] = after["_id"]
        await database.orders.update_one(
            {"_id": current["_id"], "shopId": shop_id},
            {"$set": {"contactId": after["_id"], "landedAt": at}},
            session=session,
        )
        return current, after

    for _ in range(5):
        try:
            landed = await activity.in_transaction(database, land)
        except (_Raced, DuplicateKeyError):
            continue  # a contact changed or was made meanwhile: look again
        if landed is None:
            return None
        current, after = landed
        log.warning("order %s was stored but never counted; counted now", current["_id"])
        order.update(current)
        return await _after_landing(database, shop_id, _checked_from_order(current), after)
    raise RuntimeError("an order never counted could not be counted: its contact kept changing")


# ---------------------------------------------------------------- changing orders


async def change_order(
    database: Database,
    shop_id: str,
    order: Doc,
    *,
    status: str | None = None,
    refunded: Decimal | None = None,
    author: str | None = None,
    reported_at: dt.datetime | None = None,
) -> tuple[Doc, Doc | None]:
    """Move an order to a new status and/or refunded amount; the contact follows.

    The order changes with a compare-and-set on what was read, so of two
    concurrent changes each applies its own step exactly once. Returns the
    order as it now is and the contact when it changed.

    `reported_at` is the shop's updatedAt of the report: one older than the
    report applied last changes nothing, decided in the write's filter so a
    newer report landing meanwhile is never undone. A report without it
    applies as before and leaves the stored time alone.
    """
    for _ in range(MAX_ATTEMPTS):
        applied_at = order.get("shopUpdatedAt")
        if reported_at is not None and applied_at is not None and reported_at < applied_at:
            return order, None
        sets: Doc = {}
        # Canceled is final, as on the shop platforms: a later report (a
        # webhook replayed with its original status) never reopens the order.
        if status is not None and status != order["status"] and order["status"] != "CANCELED":
            sets["status"] = status
        if refunded is not None and refunded != order["refunded"].to_decimal():
            sets["refunded"] = _d128(refunded)
        newer = reported_at is not None and (applied_at is None or reported_at > applied_at)
        if not sets and not newer:
            return order, None
        expected: Doc = {"status": order["status"], "refunded": order["refunded"]}
        update: Doc = {}
        if sets:
            sets["updatedAt"] = utc_now()
            update["$set"] = sets
        if reported_at is not None:
            # Missing and null match too: an order first reported without a time.
            expected["shopUpdatedAt"] = {"$not": {"$gt": reported_at}}
            update["$max"] = {"shopUpdatedAt": reported_at}
        changed = await database.orders.find_one_and_update(
            {"shopId": shop_id, "_id": order["_id"], **expected},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if changed is not None:
            contact = await _follow_status(database, shop_id, order, changed, author)
            return changed, contact
        reread = await database.orders.find_one({"shopId": shop_id, "_id": order["_id"]})
        if reread is None:
            raise not_found(("id",), "Order")
        order = reread
    raise RuntimeError("the order kept changing while it was being updated")


async def _follow_status(
    database: Database, shop_id: str, before: Doc, after: Doc, author: str | None
) -> Doc | None:
    """Re-derive the contact's statistics after an order's status changed."""
    contact_id = after.get("contactId")
    if contact_id is None or before["status"] == after["status"]:
        return None
    entries = []
    if after["status"] == "CANCELED":
        entries.append(
            activity.entry(
                "ORDER_CANCELED", text=_order_label(after), author=author, order_id=after["_id"]
            )
        )
    was, now_counts = _counted(before["status"]), _counted(after["status"])
    log = activity.push(entries) if entries else {}
    at = utc_now()
    if was and not now_counts:
        contact = await _uncount(database, shop_id, contact_id, after, log, at)
    else:
        update = activity.merge_updates({"$set": {"updatedAt": at}}, log)
        if now_counts and not was:
            update = activity.merge_updates(update, _stats_update(after, +1))
        contact = await database.contacts.find_one_and_update(
            {"shopId": shop_id, "_id": contact_id},
            update,
            projection=LIST_PROJECTION,
            return_document=ReturnDocument.AFTER,
        )
    if contact is not None and entries:
        await activity.spill_overflow(database, shop_id, contact)
    return contact


async def _uncount(
    database: Database, shop_id: str, contact_id: ObjectId, order: Doc, log: Doc, at: dt.datetime
) -> Doc | None:
    """Take an order out of the statistics: count and sum by `$inc`, first/last recomputed.

    The recomputed times are written only if no other statistics write
    (they all bump `orderRev`) came between reading and writing.
    """
    for attempt in range(MAX_ATTEMPTS):
        current = await database.contacts.find_one(
            {"shopId": shop_id, "_id": contact_id}, {"orderRev": 1}
        )
        if current is None:
            return None
        bounds = await (
            await database.orders.aggregate(
                [
                    *history_stages(shop_id, [contact_id], COUNTED),
                    {
                        "$group": {
                            "_id": None,
                            "first": {"$min": "$placedAt"},
                            "last": {"$max": "$placedAt"},
                        }
                    },
                ]
            )
        ).to_list()
        first = bounds[0]["first"] if bounds else None
        last = bounds[0]["last"] if bounds else None
        update = activity.merge_updates(
            _stats_update(order, -1),
            # No counted order left: the times go (never null, see BOUND_FIELDS).
            set_or_unset({"firstOrderAt": first, "lastOrderAt": last, "updatedAt": at}),
            log,
        )
        contact = await database.contacts.find_one_and_update(
            {"shopId": shop_id, "_id": contact_id, "orderRev": current.get("orderRev")},
            update,
            projection=LIST_PROJECTION,
            return_document=ReturnDocument.AFTER,
        )
        if contact is not None:
            return contact
        if attempt > 2:
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
    raise RuntimeError("the contact's statistics kept changing while an order was canceled")


async def cancel_order(
    database: Database, shop_id: str, order_id: ObjectId, author: str
) -> tuple[Doc, Doc | None]:
    """Cancel from the admin side; canceling a canceled order changes nothing."""
    order = await database.orders.find_one({"shopId": shop_id, "_id": order_id})
    if order is None:
        raise not_found(("id",), "Order")
    # An order never counted must not be taken out of the statistics.
    await land_if_lost(database, shop_id, order)
    return await change_order(database, shop_id, order, status="CANCELED", author=author)


# ---------------------------------------------------------------- drafts


async def create_draft(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    data: DraftData,
    author: str,
    *,
    shop_currency: str | None = None,
) -> tuple[Doc, Doc]:
    """A DRAFT order for a contact; a LEAD becomes a CUSTOMER. Drafts never count in statistics."""
    check = Checker()
    p: Field = ("input",)
    wanted = _currency(check, (*p, "currencyCode"), data.currency_code, required=False)
    amounts = _amounts(check, p, wanted, data.line_items, data.shipping, data.tax, data.discount)
    shipping_address = check.address((*p, "shippingAddress"), data.shipping_address)
    if not check.ok:
        raise Refused(check.problems)
    assert amounts is not None
    contact = await database.contacts.find_one(
        {"shopId": shop_id, "_id": contact_id},
        {"email": 1, "emailKey": 1, "firstName": 1, "lastName": 1, "phone": 1, "kind": 1},
    )
    if contact is None:
        raise not_found(("contactId",))
    amounts.currency = await settle_currency(
        database, shop_id, shop_currency, wanted, (*p, "currencyCode")
    )
    at = utc_now()
    order: Doc = {
        "_id": ObjectId(),
        "shopId": shop_id,
        "number": None,
        "status": "DRAFT",
        "email": contact["email"],
        "emailKey": contact["emailKey"],
        "contactId": contact_id,
        "firstName": contact.get("firstName"),
        "lastName": contact.get("lastName"),
        "phone": contact.get("phone"),
        "placedAt": None,
        "createdAt": at,
        "updatedAt": at,
        **_money_fields(amounts, ZERO),
        "shippingAddress": shipping_address,
        "billingAddress": None,
        "acceptsMarketing": None,
        "hasAccount": None,
        "createdBy": author,
    }
    await database.orders.insert_one(order)
    created = activity.entry(
        "DRAFT_ORDER_CREATED", text=_order_label(order), author=author, order_id=order["_id"], at=at
    )
    converted = activity.entry(
        "CONVERTED_TO_CUSTOMER", text=_order_label(order), author=author, at=at
    )
    after = await database.contacts.find_one_and_update(
        {"shopId": shop_id, "_id": contact_id, "kind": "LEAD"},
        activity.merge_updates(
            {"$set": {"kind": "CUSTOMER", "updatedAt": at}}, activity.push([created, converted])
        ),
        projection=LIST_PROJECTION,
        return_document=ReturnDocument.AFTER,
    )
    if after is None:
        after = await database.contacts.find_one_and_update(
            {"shopId": shop_id, "_id": contact_id},
            activity.merge_updates({"$set": {"updatedAt": at}}, activity.push([created])),
            projection=LIST_PROJECTION,
            return_document=ReturnDocument.AFTER,
        )
    if after is None:  # deleted while the draft was being made: take the draft back
        await database.orders.delete_one({"shopId": shop_id, "_id": order["_id"]})
        raise not_found(("contactId",))
    await activity.spill_overflow(database, shop_id, after)
    return order, after


# ---------------------------------------------------------------- seeding


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
        **_money_fields(amounts, ZERO),
        "shippingAddress": contact.get("shippingAddress") if amounts.ships else None,
        "billingAddress": None,
        "acceptsMarketing": False,
        "hasAccount": False,
    }


def _seed_statistics(orders: list[Doc]) -> Doc:
    """The contact fields a run of orders (oldest first) produces, as recording them would."""
    counted = [o for o in orders if _counted(o["status"])]
    shipped = [o for o in orders if o["shippingAddress"]]
    return {
        "kind": "CUSTOMER",
        "orderCount": len(counted),
        "totalSpent": _d128(sum((o["total"].to_decimal() for o in counted), ZERO)),
        "shipAt": shipped[-1]["placedAt"] if shipped else None,
        "orderRev": len(orders),
        # Only with a counted order: never null (see BOUND_FIELDS).
        **(
            {"firstOrderAt": counted[0]["placedAt"], "lastOrderAt": counted[-1]["placedAt"]}
            if counted
            else {}
        ),
    }


async def seed_orders(
    database: Database, shop_id: str, contact_docs: list[Doc], per_contact: int, rng: random.Random
) -> int:
    """`per_contact` fake orders for each of the (just inserted) contacts, with their statistics.

    Everything is written in bulk: one insert of the orders and one bulk
    update of the contacts per call.
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
        entries = [entry for order in own for entry in _placed_entries(order)]
        update = activity.merge_updates({"$set": _seed_statistics(own)}, activity.push(entries))
        updates.append(UpdateOne({"shopId": shop_id, "_id": contact["_id"]}, update))
    await database.orders.bulk_write([InsertOne(order) for order in orders], ordered=False)
    await database.contacts.bulk_write(updates, ordered=False)
    return len(orders)
