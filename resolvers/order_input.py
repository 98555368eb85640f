"""What a shop or a staff member sends about an order, checked: every problem at once, nothing written.

`check_order` validates a report (`orderRecord`, the webhook) and
`check_draft` a draft; both compute exact line totals and the order total
(Decimal, never float) and refuse a total that does not add up.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from loaders.mongo import Doc
from resolvers.clock import now as utc_now
from resolvers.errors import Field, Refused
from resolvers.validation import NAME_MAX, Checker

# What a report may say; drafts are made with draftOrderCreate only.
RECORDABLE = ("OPEN", "FULFILLED", "CANCELED")

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
    updated_at: dt.datetime | None = None


def check_currency(check: Checker, path: Field, value: str | None, *, required: bool) -> str | None:
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


def check_amounts(
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
    currency = check_currency(check, (*p, "currencyCode"), data.currency_code, required=True)
    amounts = check_amounts(
        check, p, currency, data.line_items, data.shipping, data.tax, data.discount
    )
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


@dataclass
class CheckedDraft:
    amounts: Amounts
    currency: str | None  # None: the shop's
    shipping_address: dict[str, str] | None


def check_draft(data: DraftData) -> CheckedDraft:
    """Validate a draft; Refused with every problem at once."""
    check = Checker()
    p: Field = ("input",)
    wanted = check_currency(check, (*p, "currencyCode"), data.currency_code, required=False)
    amounts = check_amounts(
        check, p, wanted, data.line_items, data.shipping, data.tax, data.discount
    )
    shipping_address = check.address((*p, "shippingAddress"), data.shipping_address)
    if not check.ok:
        raise Refused(check.problems)
    assert amounts is not None
    return CheckedDraft(amounts, wanted, shipping_address)
