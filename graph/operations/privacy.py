"""The person's rights: access (a copy of everything stored) and erasure. ADMIN keys only."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.types.node import decode_id, encode_id
from graph.types.payloads import ContactsDeletePayload
from graph.types.scalars import JSON
from resolvers import privacy
from resolvers.errors import Refused


@strawberry.type
class PrivacyQuery:
    @strawberry.field(
        description=(
            "Everything stored about one person (right of access): contact, activity including the archive, "
            "notes, orders, messages and consent history; null when there is no such contact."
        )
    )
    async def contact_data_export(self, info: Info, id: strawberry.ID) -> JSON | None:
        contact_id = decode_id(id, "Contact")
        if contact_id is None:
            return None
        data = await privacy.data_export(info.context.database, info.context.shop_id, contact_id)
        return JSON(data) if data is not None else None


@strawberry.type
class PrivacyMutation:
    @strawberry.mutation(
        description=(
            "Right to erasure: the contact, its archived activity and its messages are deleted; its orders stay "
            "for the books without any personal field (the email becomes a random placeholder)."
        )
    )
    async def contact_erase(self, info: Info, id: strawberry.ID) -> ContactsDeletePayload:
        ctx = info.context
        try:
            erased = await privacy.erase_contact(
                ctx.database, ctx.shop_id, decode_id(id, "Contact")
            )
        except Refused as refusal:
            return ContactsDeletePayload.refused(refusal)
        ctx.loaders.contact_by_id.prime(erased, None, force=True)
        return ContactsDeletePayload(deleted_ids=[strawberry.ID(encode_id("Contact", erased))])
