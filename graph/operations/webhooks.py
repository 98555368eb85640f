"""Webhook endpoints (ADMIN): where outbound events go, their secrets, and the delivery log."""

from __future__ import annotations

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.errors import bad_input
from graph.operations.contacts import NODE_RESOLVERS
from graph.types.node import decode_id
from graph.types.webhook import (
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointPayload,
)
from resolvers import webhook_endpoints as endpoints
from resolvers.errors import Refused
from resolvers.shops import Role


def _endpoint_id(id: strawberry.ID) -> ObjectId | None:
    return decode_id(id, "WebhookEndpoint")


def _names(events: list[EventType] | None) -> list[str] | None:
    return None if events is None else [e.value for e in events]


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The shop's webhook endpoints, oldest first (ADMIN).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        ctx = info.context
        docs = await endpoints.list_endpoints(ctx.database, ctx.shop_id)
        return [WebhookEndpoint.from_doc(doc) for doc in docs]

    @strawberry.field(
        description="An endpoint's delivery log, newest first; kept 7 days after delivery (ADMIN)."
    )
    async def webhook_deliveries(
        self, info: Info, endpoint_id: strawberry.ID, first: int = 50
    ) -> list[WebhookDelivery]:
        if not 1 <= first <= endpoints.MAX_DELIVERIES_PAGE:
            raise bad_input(f"`first` must be between 1 and {endpoints.MAX_DELIVERIES_PAGE}.")
        ctx = info.context
        docs = await endpoints.list_deliveries(
            ctx.database, ctx.shop_id, _endpoint_id(endpoint_id), first
        )
        return [WebhookDelivery.from_doc(doc) for doc in docs]


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="A new endpoint for these event types; the answer holds its secret, shown this once."
    )
    async def webhook_endpoint_create(
        self, info: Info, url: str, events: list[EventType]
    ) -> WebhookEndpointPayload:
        ctx = info.context
        try:
            doc, secret = await endpoints.create_endpoint(
                ctx.database,
                ctx.shop_id,
                url,
                _names(events) or [],
                allow_insecure=ctx.settings.allow_insecure_webhooks,
            )
        except Refused as refusal:
            return WebhookEndpointPayload.refused(refusal)
        return WebhookEndpointPayload(webhook_endpoint=WebhookEndpoint.from_doc(doc), secret=secret)

    @strawberry.mutation(
        description="Change an endpoint's URL, event types or whether it is enabled; "
        "enabling it again forgets the failures that disabled it."
    )
    async def webhook_endpoint_update(
        self,
        info: Info,
        id: strawberry.ID,
        url: str | None = None,
        events: list[EventType] | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpointPayload:
        ctx = info.context
        try:
            doc = await endpoints.update_endpoint(
                ctx.database,
                ctx.shop_id,
                _endpoint_id(id),
                url=url,
                events=_names(events),
                enabled=enabled,
                allow_insecure=ctx.settings.allow_insecure_webhooks,
            )
        except Refused as refusal:
            return WebhookEndpointPayload.refused(refusal)
        return WebhookEndpointPayload(webhook_endpoint=WebhookEndpoint.from_doc(doc))

    @strawberry.mutation(
        description="A new signing secret, shown this once; the old one keeps signing "
        "(both signatures are sent) for 24 hours."
    )
    async def webhook_endpoint_rotate_secret(
        self, info: Info, id: strawberry.ID
    ) -> WebhookEndpointPayload:
        ctx = info.context
        try:
            doc, secret = await endpoints.rotate_secret(
                ctx.database,
                ctx.shop_id,
                _endpoint_id(id),
                overlap_seconds=ctx.settings.webhook_secret_overlap_seconds,
            )
        except Refused as refusal:
            return WebhookEndpointPayload.refused(refusal)
        return WebhookEndpointPayload(webhook_endpoint=WebhookEndpoint.from_doc(doc), secret=secret)

    @strawberry.mutation(
        description="Delete an endpoint and its delivery log; nothing more is sent to it."
    )
    async def webhook_endpoint_delete(
        self, info: Info, id: strawberry.ID
    ) -> WebhookEndpointPayload:
        ctx = info.context
        try:
            doc = await endpoints.delete_endpoint(ctx.database, ctx.shop_id, _endpoint_id(id))
        except Refused as refusal:
            return WebhookEndpointPayload.refused(refusal)
        return WebhookEndpointPayload(webhook_endpoint=WebhookEndpoint.from_doc(doc))


async def _endpoint_node(info: Info, oid: ObjectId) -> WebhookEndpoint | None:
    # Endpoints are ADMIN's: to any other key, node(id:) finds nothing.
    ctx = info.context
    if ctx.key.role != Role.ADMIN:
        return None
    doc = await endpoints.find_endpoint(ctx.database, ctx.shop_id, oid)
    return WebhookEndpoint.from_doc(doc) if doc else None


NODE_RESOLVERS["WebhookEndpoint"] = _endpoint_node
