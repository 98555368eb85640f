"""messageSend, and reading a message's delivery status."""

from __future__ import annotations

from typing import Annotated

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.operations.contacts import NODE_RESOLVERS
from graph.types.message import Message, MessagePayload
from graph.types.node import decode_id
from resolvers import messages
from resolvers.errors import Refused, not_found


async def _message(info: Info, oid: ObjectId) -> Message | None:
    doc = await messages.find_message(info.context.database, info.context.shop_id, oid)
    return Message.from_doc(doc) if doc else None


@strawberry.type
class MessageQuery:
    @strawberry.field(
        description="A message by id, with its delivery status; null when unknown in this shop."
    )
    async def message(self, info: Info, id: strawberry.ID) -> Message | None:
        oid = decode_id(id, "Message")
        return await _message(info, oid) if oid else None


@strawberry.type
class MessageMutation:
    @strawberry.mutation(
        description=(
            "Queue an e-mail to a contact; it is delivered in the background (with retries) and logged as "
            "MESSAGE_SENT once the mail server accepts it. Marketing e-mail needs SUBSCRIBED consent "
            "(else NOT_ALLOWED) and carries an unsubscribe link and List-Unsubscribe header."
        )
    )
    async def message_send(
        self,
        info: Info,
        contact_id: strawberry.ID,
        subject: Annotated[
            str, strawberry.argument(description="One line, at most 200 characters.")
        ],
        body: Annotated[
            str, strawberry.argument(description="Plain text, at most 100,000 characters.")
        ],
        marketing: bool | None = False,
    ) -> MessagePayload:
        ctx = info.context
        try:
            cid = decode_id(contact_id, "Contact")
            if cid is None:
                raise not_found(("contactId",))
            doc = await messages.queue_message(
                ctx.database,
                ctx.shop_id,
                cid,
                subject,
                body,
                marketing=bool(marketing),
                author=ctx.key.name,
                base_url=ctx.settings.base_url,
            )
        except Refused as refusal:
            return MessagePayload.refused(refusal)
        outbox = getattr(ctx.request.app.state, "outbox", None)
        if outbox is not None:
            outbox.wake()
        return MessagePayload(message=Message.from_doc(doc))


NODE_RESOLVERS["Message"] = _message
