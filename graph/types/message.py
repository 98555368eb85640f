"""E-mail to a contact and what messageSend returns."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.errors import refusal_errors
from graph.types.common import UserError
from graph.types.node import Node, encode_id
from graph.types.scalars import DateTime
from resolvers.errors import Refused


@strawberry.type(description="An e-mail to a contact, in the outbox until delivered.")
class Message(Node):
    to: str = strawberry.field(description="The contact's address when the message was queued.")
    subject: str
    marketing: bool = strawberry.field(
        description="Marketing e-mail: only to SUBSCRIBED contacts, with an unsubscribe link."
    )
    status: str = strawberry.field(
        description="QUEUED (waiting or retrying; stays so while no SMTP server is configured), SENT or FAILED."
    )
    created_at: DateTime
    sent_at: DateTime | None = strawberry.field(description="When the mail server accepted it.")
    attempts: int = strawberry.field(description="Delivery attempts so far.")
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed; for FAILED, the reason."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Message:
        return cls(
            id=strawberry.ID(encode_id("Message", doc["_id"])),
            to=doc["to"],
            subject=doc["subject"],
            marketing=bool(doc.get("marketing")),
            status=doc["status"],
            created_at=doc["createdAt"],
            sent_at=doc.get("sentAt"),
            attempts=int(doc.get("attempts") or 0),
            last_error=doc.get("lastError"),
        )


@strawberry.type
class MessagePayload:
    message: Message | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> MessagePayload:
        return cls(user_errors=refusal_errors(refusal))
