"""Outbound events: the event types, the shop's webhook endpoints and their delivery log."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from graph.errors import refusal_errors
from graph.types.common import UserError
from graph.types.node import Node, encode_id
from graph.types.scalars import DateTime
from resolvers.errors import Refused
from resolvers.event_delivery import webhook_id


@strawberry.enum(
    description="What an outbound event reports; an endpoint subscribes to some of them."
)
class EventType(Enum):
    CONTACT_CREATED = "CONTACT_CREATED"
    CONTACT_UPDATED = "CONTACT_UPDATED"
    CONTACT_DELETED = "CONTACT_DELETED"
    CONTACT_MERGED = "CONTACT_MERGED"
    CONTACT_ERASED = "CONTACT_ERASED"
    CONSENT_CHANGED = "CONSENT_CHANGED"
    LABELS_CHANGED = "LABELS_CHANGED"
    SUBSCRIPTION_CANCEL_REQUESTED = "SUBSCRIPTION_CANCEL_REQUESTED"


@strawberry.type(
    description="Where the shop's events go: a URL that receives them signed per Standard Webhooks."
)
class WebhookEndpoint(Node):
    url: str
    events: list[EventType] = strawberry.field(description="The event types sent to it.")
    enabled: bool = strawberry.field(
        description="False when switched off, or disabled after its deliveries failed for 5 days."
    )
    created_at: DateTime
    last_delivery_at: DateTime | None = strawberry.field(
        description="When a delivery last succeeded."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed (and why it was disabled); null after a success."
    )
    failing_since: DateTime | None = strawberry.field(
        description="The first failure since the last success; null while deliveries succeed."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(encode_id("WebhookEndpoint", doc["_id"])),
            url=doc["url"],
            events=[EventType(e) for e in doc.get("events") or []],
            enabled=bool(doc.get("enabled")),
            created_at=doc["createdAt"],
            last_delivery_at=doc.get("lastDeliveryAt"),
            last_error=doc.get("lastError"),
            failing_since=doc.get("failingSince"),
        )


@strawberry.type
class WebhookEndpointPayload:
    webhook_endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The signing secret (whsec_…), shown once: on create and on rotate.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> WebhookEndpointPayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.type(description="One event sent (or being sent) to one endpoint.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(
        description="The webhook-id header: the same on every retry, so receivers can drop repeats."
    )
    event: EventType
    status: str = strawberry.field(description="PENDING, DELIVERED or FAILED.")
    attempts: int
    last_status_code: int | None = strawberry.field(
        description="The HTTP status of the last answer; null when there was none (timeout, refused)."
    )
    created_at: DateTime
    delivered_at: DateTime | None = None
    last_error: str | None = strawberry.field(
        default=None, description="Why the last attempt failed; for FAILED, the reason."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(webhook_id(doc["_id"])),
            event=EventType(doc["type"]),
            status=doc["status"],
            attempts=int(doc.get("attempts") or 0),
            last_status_code=doc.get("lastStatusCode"),
            created_at=doc["createdAt"],
            delivered_at=doc.get("deliveredAt"),
            last_error=doc.get("lastError"),
        )
