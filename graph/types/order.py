"""Orders: the Order type, its line items and connection, and the inputs that record orders."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.errors import refusal_errors
from graph.types.common import Address, AddressInput, Money, PageInfo, UserError
from graph.types.contact import Contact
from graph.types.node import Node, encode_id
from graph.types.scalars import DateTime, Decimal
from loaders.keyset import Page, PageRequest, decode_cursor
from loaders.orders import DEFAULT_PAGE, SORT_FIELD, OrderCountKey, OrdersKey, order_statuses
from resolvers.errors import Refused
from resolvers.order_docs import shop_external_id
from resolvers.order_input import DraftData, LineItemData, OrderData


@strawberry.enum(description="Where an order stands.")
class OrderStatus(Enum):
    DRAFT = strawberry.enum_value(
        "DRAFT", description="Made by staff for a contact; not placed, not counted."
    )
    OPEN = strawberry.enum_value("OPEN", description="Placed, not yet fulfilled.")
    FULFILLED = "FULFILLED"
    CANCELED = strawberry.enum_value(
        "CANCELED",
        description="Not counted in statistics; hidden from order history unless asked for.",
    )


@strawberry.type(description="One line of an order.")
class LineItem:
    title: str
    sku: str | None
    quantity: int
    unit_price: Money
    total: Money = strawberry.field(description="Quantity times unit price.")
    requires_shipping: bool = strawberry.field(
        description="False for digital products and services."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any], currency: str | None) -> LineItem:
        return cls(
            title=doc["title"],
            sku=doc.get("sku"),
            quantity=doc["quantity"],
            unit_price=Money.of(doc["unitPrice"], currency),
            total=Money.of(doc["total"], currency),
            requires_shipping=bool(doc.get("requiresShipping", True)),
        )


@strawberry.type(description="An order of a contact: placed in the shop, or a draft made by staff.")
class Order(Node):
    external_id: str | None = strawberry.field(
        description="The shop's own order id; unique per shop. Null for drafts."
    )
    number: str | None = strawberry.field(description="The order number the customer sees.")
    status: OrderStatus
    # Nullable: keys of the shop's backend and of web pages may not read it.
    email: str | None = strawberry.field(
        description="The email the order was placed with; null with a FORBIDDEN error for "
        "INGEST and PUBLIC keys."
    )
    first_name: str | None
    last_name: str | None
    phone: str | None
    placed_at: DateTime | None = strawberry.field(
        description="When the order was placed; null for drafts."
    )
    created_at: DateTime = strawberry.field(description="When contactgraph first recorded it.")
    updated_at: DateTime
    accepts_marketing: bool | None = strawberry.field(
        description="The checkout's marketing checkbox, as reported."
    )
    has_account: bool | None = strawberry.field(
        description="Whether the buyer had a customer account, as reported."
    )
    doc: strawberry.Private[dict[str, Any]]

    # Amounts, lines and addresses are built only when selected: a list of
    # contacts with their latest orders usually asks for one or two of them.
    def _money(self, name: str) -> Money:
        return Money.of(self.doc.get(name), self.doc.get("currency"))

    @strawberry.field(description="Sum of the line totals.")
    def subtotal(self) -> Money:
        return self._money("subtotal")

    @strawberry.field
    def shipping(self) -> Money:
        return self._money("shipping")

    @strawberry.field
    def tax(self) -> Money:
        return self._money("tax")

    @strawberry.field
    def discount(self) -> Money:
        return self._money("discount")

    @strawberry.field(description="Subtotal + shipping + tax - discount.")
    def total(self) -> Money:
        return self._money("total")

    @strawberry.field(description="Refunded so far; statistics do not subtract it.")
    def refunded(self) -> Money:
        return self._money("refunded")

    @strawberry.field
    def line_items(self) -> list[LineItem]:
        currency = self.doc.get("currency")
        return [LineItem.from_doc(line, currency) for line in self.doc.get("lineItems") or []]

    @strawberry.field
    def shipping_address(self) -> Address | None:
        return Address.from_doc(self.doc.get("shippingAddress"))

    @strawberry.field
    def billing_address(self) -> Address | None:
        return Address.from_doc(self.doc.get("billingAddress"))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Order:
        return cls(
            id=strawberry.ID(encode_id("Order", doc["_id"])),
            external_id=shop_external_id(doc),
            number=doc.get("number"),
            status=OrderStatus(doc["status"]),
            email=doc["email"],
            first_name=doc.get("firstName"),
            last_name=doc.get("lastName"),
            phone=doc.get("phone"),
            placed_at=doc.get("placedAt"),
            created_at=doc["createdAt"],
            updated_at=doc.get("updatedAt") or doc["createdAt"],
            accepts_marketing=doc.get("acceptsMarketing"),
            has_account=doc.get("hasAccount"),
            doc=doc,
        )

    @strawberry.field(
        description="The contact the order belongs to; null once that contact was deleted."
    )
    async def contact(self, info: Info) -> Contact | None:
        contact_id = self.doc.get("contactId")
        if contact_id is None:
            return None
        doc = await info.context.loaders.contact_by_id.load(contact_id)
        return Contact.from_doc(doc, info.context.currency) if doc else None


async def load_order(info: Info, order_id: ObjectId | None) -> Order | None:
    if order_id is None:
        return None
    doc = await info.context.loaders.order_by_id.load(order_id)
    return Order.from_doc(doc) if doc else None


def order_from(info: Info, doc: dict[str, Any]) -> Order:
    """An order just written: prime the loader so later fields see the new state."""
    info.context.loaders.order_by_id.prime(doc["_id"], doc, force=True)
    return Order.from_doc(doc)


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type(description="A page of a contact's orders, newest first.")
class OrderConnection:
    nodes: list[Order]
    page: strawberry.Private[Page]
    count_key: strawberry.Private[OrderCountKey]

    # Cursors are encoded only when asked for: a list of contacts with their
    # latest orders usually selects `nodes` alone.
    @strawberry.field
    def edges(self) -> list[OrderEdge]:
        return [
            OrderEdge(cursor=self.page.cursor(row), node=node)
            for row, node in zip(self.page.rows, self.nodes, strict=True)
        ]

    @strawberry.field
    def page_info(self) -> PageInfo:
        return PageInfo.of(self.page)

    @strawberry.field(
        description="How many orders the history holds (with the same filters), over all pages."
    )
    async def total_count(self, info: Info) -> int:
        return await info.context.loaders.order_count_by_contact_id.load(self.count_key)

    @classmethod
    def from_page(cls, page: Page, count_key: OrderCountKey) -> OrderConnection:
        return cls(nodes=[Order.from_doc(row) for row in page.rows], page=page, count_key=count_key)


async def contact_orders(
    info: Info,
    contact_id: ObjectId,
    first: int | None,
    after: str | None,
    include_canceled: bool | None,
    include_drafts: bool | None,
) -> OrderConnection:
    """A contact's order history through the request's loader (batched across contacts)."""
    size, _ = PageRequest(first=first).size(DEFAULT_PAGE)
    if after is not None:
        decode_cursor(after, SORT_FIELD)  # a bad cursor is the client's error, before any read
    statuses = order_statuses(bool(include_canceled), include_drafts is not False)
    page = await info.context.loaders.orders_by_contact_id.load(
        OrdersKey(contact_id, size, after, statuses)
    )
    return OrderConnection.from_page(page, OrderCountKey(contact_id, statuses))


async def _payload_contact(root: OrderPayload, info: Info) -> Contact | None:
    # Read only when selected: an order's transaction does not read its
    # contact back (the contact as written is primed in the loader when at hand).
    if root.contact_id is None:
        return None
    doc = await info.context.loaders.contact_by_id.load(root.contact_id)
    return Contact.from_doc(doc, info.context.currency) if doc else None


@strawberry.type
class OrderPayload:
    order: Order | None = None
    contact: Contact | None = strawberry.field(resolver=_payload_contact)
    user_errors: list[UserError] = strawberry.field(default_factory=list)
    contact_id: strawberry.Private[ObjectId | None] = None

    @classmethod
    def refused(cls, refusal: Refused) -> OrderPayload:
        return cls(user_errors=refusal_errors(refusal))


# ---------------------------------------------------------------- inputs


@strawberry.input(description="One line of an order.")
class LineItemInput:
    title: str
    sku: str | None = None
    quantity: int = strawberry.field(description="1 to 100000.")
    unit_price: Decimal = strawberry.field(description="Non-negative, at most 4 decimal places.")
    requires_shipping: bool | None = strawberry.field(
        default=True, description="False for digital products and services."
    )

    def to_data(self) -> LineItemData:
        return LineItemData(
            title=self.title,
            sku=self.sku,
            quantity=self.quantity,
            unit_price=self.unit_price,
            requires_shipping=self.requires_shipping,
        )


def _address(value: AddressInput | None) -> dict[str, Any] | None:
    return value.to_dict() if value is not None else None


@strawberry.input(
    description="An order as the shop reports it; also the JSON body of POST /webhooks/orders."
)
class OrderInput:
    external_id: str = strawberry.field(
        description="Idempotency key: recording the same externalId twice changes nothing."
    )
    email: str
    currency_code: str = strawberry.field(
        description="ISO 4217; must be the shop's currency (the first order sets it)."
    )
    line_items: list[LineItemInput] = strawberry.field(description="1 to 500 lines.")
    number: str | None = None
    status: OrderStatus | None = strawberry.field(
        default=OrderStatus.OPEN,
        description="OPEN, FULFILLED or CANCELED; recording again with another status "
        "updates the order.",
    )
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    placed_at: DateTime | None = strawberry.field(
        default=None, description="Default: now. At most 5 minutes in the future."
    )
    updated_at: DateTime | None = strawberry.field(
        default=None,
        description="When the shop last changed this order. A report older than the one "
        "applied last changes nothing (webhooks arrive out of order and are retried); "
        "a report without it always applies. At most 5 minutes in the future.",
    )
    shipping: Decimal | None = Decimal("0")
    tax: Decimal | None = Decimal("0")
    discount: Decimal | None = Decimal("0")
    total: Decimal | None = strawberry.field(
        default=None, description="When given, must equal lines + shipping + tax - discount."
    )
    refunded: Decimal | None = strawberry.field(
        default=None,
        description="Refunded so far (default 0); recording again with a new amount "
        "updates the order.",
    )
    shipping_address: AddressInput | None = None
    billing_address: AddressInput | None = None
    accepts_marketing: bool | None = strawberry.field(
        default=None,
        description="The checkout's marketing checkbox: true records consent SUBSCRIBED "
        "(single opt-in).",
    )
    has_account: bool | None = strawberry.field(
        default=None, description="The buyer has a customer account in the shop."
    )

    def to_data(self) -> OrderData:
        return OrderData(
            external_id=self.external_id,
            email=self.email,
            currency_code=self.currency_code,
            line_items=[line.to_data() for line in self.line_items],
            number=self.number,
            status=self.status.value if self.status is not None else None,
            first_name=self.first_name,
            last_name=self.last_name,
            phone=self.phone,
            placed_at=self.placed_at,
            updated_at=self.updated_at,
            shipping=self.shipping,
            tax=self.tax,
            discount=self.discount,
            total=self.total,
            refunded=self.refunded,
            shipping_address=_address(self.shipping_address),
            billing_address=_address(self.billing_address),
            accepts_marketing=self.accepts_marketing,
            has_account=self.has_account,
        )


@strawberry.input(description="A draft order made by staff for a contact.")
class DraftOrderInput:
    currency_code: str | None = strawberry.field(
        default=None, description="Default: the shop's currency."
    )
    line_items: list[LineItemInput] = strawberry.field(description="1 to 500 lines.")
    shipping: Decimal | None = Decimal("0")
    tax: Decimal | None = Decimal("0")
    discount: Decimal | None = Decimal("0")
    shipping_address: AddressInput | None = None

    def to_data(self) -> DraftData:
        return DraftData(
            line_items=[line.to_data() for line in self.line_items],
            currency_code=self.currency_code,
            shipping=self.shipping,
            tax=self.tax,
            discount=self.discount,
            shipping_address=_address(self.shipping_address),
        )
