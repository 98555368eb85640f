"""Queries and mutations of orders."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import strawberry

from graph.context import Info
from graph.types.node import decode_id
from graph.types.order import (
    DraftOrderInput,
    Order,
    OrderInput,
    OrderPayload,
    load_order,
    order_from,
)
from resolvers.drafts import create_draft
from resolvers.errors import Refused, not_found
from resolvers.order_cancel import cancel_order
from resolvers.order_record import record_order


def _payload(info: Info, order: dict, contact: dict | None = None) -> OrderPayload:
    """The answer of an order mutation; `contact` is the order's contact as written, when at hand."""
    ctx = info.context
    if ctx.shop.currency is None and order.get("currency"):
        # This order gave the shop its currency: money in this response is in it.
        ctx.shop = replace(ctx.shop, currency=order["currency"])
    # Histories read earlier in this request (several mutations in one) are stale now.
    ctx.loaders.orders_by_contact_id.clear_all()
    ctx.loaders.order_count_by_contact_id.clear_all()
    contact_id = order.get("contactId")
    if contact is not None:
        ctx.loaders.contact_by_id.prime(contact["_id"], contact, force=True)
    elif contact_id is not None:
        # Changed by this mutation: read afresh, not from what this request read before.
        with contextlib.suppress(KeyError):  # not read before
            ctx.loaders.contact_by_id.clear(contact_id)
    return OrderPayload(order=order_from(info, order), contact_id=contact_id)


@strawberry.type
class OrderQuery:
    @strawberry.field(description="An order by id; null when it does not exist in this shop.")
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        return await load_order(info, decode_id(id, "Order"))


@strawberry.type
class OrderMutation:
    @strawberry.mutation(
        description="The shop reports an order. Idempotent on externalId: the same order again "
        "changes nothing; "
        "a new status or refunded amount updates it and the contact's statistics."
    )
    async def order_record(self, info: Info, input: OrderInput) -> OrderPayload:
        ctx = info.context
        try:
            recorded = await record_order(
                ctx.database, ctx.shop_id, input.to_data(), shop_currency=ctx.currency
            )
        except Refused as refusal:
            return OrderPayload.refused(refusal)
        return _payload(info, recorded.order, recorded.contact)

    @strawberry.mutation(
        description="Cancel an order: it stops counting in the contact's statistics. "
        "Logs ORDER_CANCELED."
    )
    async def order_cancel(self, info: Info, id: strawberry.ID) -> OrderPayload:
        ctx = info.context
        try:
            order_id = decode_id(id, "Order")
            if order_id is None:
                raise not_found(("id",), "Order")
            order = await cancel_order(ctx.database, ctx.shop_id, order_id, ctx.key.name)
        except Refused as refusal:
            return OrderPayload.refused(refusal)
        return _payload(info, order)

    @strawberry.mutation(
        description="A draft order for a contact (not placed, not counted); "
        "a LEAD becomes a CUSTOMER. "
        "Logs DRAFT_ORDER_CREATED."
    )
    async def draft_order_create(
        self, info: Info, contact_id: strawberry.ID, input: DraftOrderInput
    ) -> OrderPayload:
        ctx = info.context
        try:
            oid = decode_id(contact_id, "Contact")
            if oid is None:
                raise not_found(("contactId",))
            order = await create_draft(
                ctx.database,
                ctx.shop_id,
                oid,
                input.to_data(),
                ctx.key.name,
                shop_currency=ctx.currency,
            )
        except Refused as refusal:
            return OrderPayload.refused(refusal)
        return _payload(info, order)
