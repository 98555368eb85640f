"""Queries and mutations of orders."""

from __future__ import annotations

from dataclasses import replace

import strawberry

from graph.context import Info
from graph.errors import ClientError
from graph.operations.contacts import contact_from
from graph.types.node import decode_id
from graph.types.order import (
    DraftOrderInput,
    Order,
    OrderInput,
    OrderPayload,
    load_order,
    order_from,
)
from resolvers import orders
from resolvers.errors import Refused, not_found


def _payload(info: Info, order: dict, contact: dict | None) -> OrderPayload:
    ctx = info.context
    if ctx.shop.currency is None and order.get("currency"):
        # This order gave the shop its currency: money in this response is in it.
        ctx.shop = replace(ctx.shop, currency=order["currency"])
    # Histories read earlier in this request (several mutations in one) are stale now.
    ctx.loaders.orders_by_contact_id.clear_all()
    ctx.loaders.order_count_by_contact_id.clear_all()
    return OrderPayload(
        order=order_from(info, order), contact=contact_from(info, contact) if contact else None
    )


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
            recorded = await orders.record_order(
                ctx.database, ctx.shop_id, input.to_data(), shop_currency=ctx.currency
            )
        except orders.OrderInFlight as err:
            raise ClientError(str(err), "TRY_AGAIN") from None
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
            order, contact = await orders.cancel_order(
                ctx.database, ctx.shop_id, order_id, ctx.key.name
            )
        except orders.OrderInFlight as err:
            raise ClientError(str(err), "TRY_AGAIN") from None
        except Refused as refusal:
            return OrderPayload.refused(refusal)
        if contact is None and order.get("contactId") is not None:
            contact = await ctx.loaders.contact_by_id.load(order["contactId"])
        return _payload(info, order, contact)

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
            order, contact = await orders.create_draft(
                ctx.database,
                ctx.shop_id,
                oid,
                input.to_data(),
                ctx.key.name,
                shop_currency=ctx.currency,
            )
        except Refused as refusal:
            return OrderPayload.refused(refusal)
        return _payload(info, order, contact)
